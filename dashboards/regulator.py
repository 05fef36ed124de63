"""Regulator evidence (read-only): claims against observed performance per registered
version, generalizability across sites, compatibility by acquisition stratum, versions in
the field with their registration status, and alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as model

from dashboards import metric_names as m
from dashboards.panels import (
    Query,
    assemble,
    graph,
    instant_table,
    link,
    selector,
    single_stat,
    stream_variables,
)
from postmarket import metrics as worker_metrics

UID = "postmarket-regulator"
TITLE = "Post-market surveillance: regulator evidence"
VERSION = "device_id, device_version, task"
STREAM = "device_id, device_version, site_id, task"


def _pooled(hit: str, miss: str, by: str, sel: str) -> str:
    """Pooled proportion hit / (hit + miss) from the confusion gauges, grouped by ``by``."""
    return (
        f'sum by ({by}) ({m.STREAM_CONFUSION}{{{sel},cell="{hit}"}})'
        f' / sum by ({by}) ({m.STREAM_CONFUSION}{{{sel},cell=~"{hit}|{miss}"}})'
    )


def _stratum(hit: str, miss: str) -> str:
    sel = selector(with_site=False)
    by = f"{VERSION}, dimension, stratum"
    name = worker_metrics.STRATUM_CONFUSION
    return (
        f'sum by ({by}) ({name}{{{sel},cell="{hit}"}})'
        f' / sum by ({by}) ({name}{{{sel},cell=~"{hit}|{miss}"}})'
    )


def build() -> model.Dashboard:
    sel = selector(with_site=False)
    claims = [
        instant_table(
            "Registered claims against observed performance, per version",
            "Claim from the registration testing, and observed performance pooled over all "
            "sites (cases with final ground truth).",
            [
                Query(
                    f"max by ({VERSION}, metric) ({m.STREAM_CLAIM}{{{sel}}})",
                    "claim",
                ),
                Query(
                    f"label_replace({_pooled('tp', 'fn', VERSION, sel)}, "
                    f'"metric", "sensitivity", "", "")',
                    "observed",
                ),
                Query(
                    f"label_replace({_pooled('tn', 'fp', VERSION, sel)}, "
                    f'"metric", "specificity", "", "")',
                    "observed",
                ),
            ],
        ),
        graph(
            "Pooled sensitivity and its claim over time",
            "Sensitivity pooled over sites for each version, against the registered value.",
            [
                Query(_pooled("tp", "fn", VERSION, sel), "{{device_version}} observed"),
                Query(
                    f'max by ({VERSION}) ({m.STREAM_CLAIM}{{{sel},metric="sensitivity"}})',
                    "{{device_version}} claim",
                ),
            ],
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Pooled specificity and its claim over time",
            "Specificity pooled over sites for each version, against the registered value.",
            [
                Query(_pooled("tn", "fp", VERSION, sel), "{{device_version}} observed"),
                Query(
                    f'max by ({VERSION}) ({m.STREAM_CLAIM}{{{sel},metric="specificity"}})',
                    "{{device_version}} claim",
                ),
            ],
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
    ]
    below = (
        f'max by ({STREAM}, metric) ({m.STREAM_PERFORMANCE}{{{sel},bound="upper"}})'
        f" < on ({STREAM}, metric) max by ({STREAM}, metric) ({m.STREAM_ACCEPTABLE_LEVEL}{{{sel}}})"
    )
    sites = [
        single_stat(
            "Sites significantly below a claim",
            "Streams whose upper 95% bound is below the claim's acceptable level (by default "
            "its lower 95% bound: what the registration study demonstrated).",
            Query(f"count({below}) or vector(0)"),
            thresholds=((None, "green"), (1, "red")),
        ),
        single_stat(
            "Sites reporting",
            "Sites with at least one case with final ground truth for the selected versions.",
            Query(f"count(count by (site_id) ({m.STREAM_CONFUSION}{{{sel}}}))"),
        ),
        graph(
            "Sensitivity per site with 95% interval",
            "Generalizability: every site's observed sensitivity and its Wilson interval.",
            [
                Query(
                    f'{m.STREAM_PERFORMANCE}{{{sel},metric="sensitivity"}}',
                    "{{site_id}} {{device_version}} {{bound}}",
                )
            ],
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Specificity per site with 95% interval",
            "Generalizability: every site's observed specificity and its Wilson interval.",
            [
                Query(
                    f'{m.STREAM_PERFORMANCE}{{{sel},metric="specificity"}}',
                    "{{site_id}} {{device_version}} {{bound}}",
                )
            ],
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
    ]
    strata = [
        instant_table(
            "Sensitivity and specificity by acquisition stratum",
            "Compatibility: slice thickness band, manufacturer and model, pooled over sites.",
            [
                Query(_stratum("tp", "fn"), "sensitivity"),
                Query(_stratum("tn", "fp"), "specificity"),
            ],
        ),
    ]
    versions = [
        graph(
            "Versions in the field: cases per hour",
            "When each version produced predictions, across all sites.",
            [
                Query(
                    f"sum by (device_id, device_version) (increase({m.PREDICTIONS}{{{sel}}}[1h]))",
                    "{{device_id}} {{device_version}}",
                )
            ],
        ),
        instant_table(
            "Registration status of each version",
            "Status the registry holds for each version (registered, pending, unregistered, "
            "withdrawn).",
            [
                Query(
                    f'{worker_metrics.VERSION_REGISTRATION}{{device_id=~"$device",'
                    f'device_version=~"$version"}} == 1'
                )
            ],
            width=12,
        ),
        instant_table(
            "Versions running without required registration",
            "Streams whose version was seen in the field although its change needed registration.",
            [
                Query(
                    f"max by ({STREAM}) "
                    f'({m.ALERTS}{{{sel},detector="{m.UNREGISTERED_CHANGE_DETECTOR}"}})'
                )
            ],
            width=12,
        ),
    ]
    alerts = [
        instant_table(
            "Open, acknowledged and resolved alerts",
            "Alerts in the evidence store by lifecycle status.",
            [
                Query(
                    f"sum by ({STREAM}, detector, severity, status) ({m.ALERTS_BY_STATUS}{{{sel}}})"
                )
            ],
            width=12,
        ),
        instant_table(
            "Alerts raised by detector and severity",
            "Alerts counted by the running workers since they started.",
            [Query(f"sum by ({STREAM}, detector, severity) ({m.ALERTS}{{{sel}}})")],
            width=12,
        ),
        instant_table(
            "Recurrences of stored alerts",
            "Signals of a stream and detector stored while its alert was unresolved: a "
            "persistent problem is one alert that recurred, not many alerts.",
            [Query(f"sum by ({STREAM}, detector, status) ({m.ALERT_RECURRENCES}{{{sel}}})")],
            width=24,
        ),
    ]
    dashboard = (
        dashboard_builders.Dashboard(TITLE)
        .uid(UID)
        .description("Regulator view (read-only): post-market evidence against registration.")
        .tags(["postmarket", "regulator"])
        .readonly()
        .time("now-7d", "now")
        .refresh("5m")
        .variables(stream_variables(m.PREDICTIONS, with_site=False))
        .link(link("Fleet", "postmarket-fleet"))
    )
    return assemble(
        dashboard,
        [
            ("Claims against observed performance", claims),
            ("Generalizability across sites", sites),
            ("Compatibility by acquisition stratum", strata),
            ("Versions and registration", versions),
            ("Alerts", alerts),
        ],
    )
