"""Fleet (manufacturer): volumes, performance against the claim, detectors and alerts per
device, version, site and task."""

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

UID = "postmarket-fleet"
TITLE = "Post-market surveillance: fleet"
STREAM = "device_id, device_version, site_id, task"
FOLLOWUP_TARGET = 0.8
"""Share of cases with final ground truth below which the stream's estimates are suspect
(the PostmarketFollowupCompletenessLow rule uses the same target)."""


def _performance(metric: str) -> list[Query]:
    sel = selector(metric=metric)
    return [
        Query(
            f"{m.STREAM_PERFORMANCE}{{{sel}}}",
            "{{site_id}} {{device_version}} {{bound}}",
        ),
        Query(f"max by ({STREAM}) ({m.STREAM_CLAIM}{{{sel}}})", "{{device_version}} claim"),
        # Weeks ahead of the labels: the estimate from the last window's calibrated scores.
        Query(
            f"{m.STREAM_ESTIMATED_PERFORMANCE}{{{selector(metric=metric, bound='estimate')}}}",
            "{{site_id}} {{device_version}} estimated from scores",
        ),
    ]


def build() -> model.Dashboard:
    sel = selector()
    volumes = [
        graph(
            "Predictions per hour",
            "New predictions accepted into the join, per stream.",
            [
                Query(
                    f"sum by ({STREAM}) (increase({m.PREDICTIONS}{{{sel}}}[1h]))",
                    "{{device_id}} {{device_version}} {{site_id}} {{task}}",
                )
            ],
        ),
        graph(
            "Outcomes per hour by decision and truth",
            "Predictions joined with their final ground truth.",
            [
                Query(
                    f"sum by (decision, label) (increase({m.OUTCOMES}{{{sel}}}[1h]))",
                    "decision {{decision}}, truth {{label}}",
                )
            ],
        ),
        single_stat(
            "Cases awaiting ground truth",
            "Predictions held in the workers' join tables without a final label (all streams).",
            Query(f"sum({m.CASES_AWAITING_TRUTH})"),
        ),
        single_stat(
            "Follow-up completeness (lowest stream)",
            "Share of predictions past their follow-up window that have final ground truth; "
            f"red below the {FOLLOWUP_TARGET:.0%} target.",
            Query(f"min({worker_metrics.FOLLOWUP_COMPLETENESS}{{{sel}}})"),
            unit="percentunit",
            thresholds=((None, "red"), (FOLLOWUP_TARGET, "green")),
        ),
        single_stat(
            "Dead-lettered records (1 h)",
            "Invalid records sent to the dead-letter topic in the last hour, all topics.",
            Query(f"sum(increase({m.EVENTS_DEADLETTERED}[1h]))"),
            thresholds=((None, "green"), (1, "orange")),
        ),
        single_stat(
            "Duplicates ignored (1 h)",
            "Records skipped because their event_id was already processed (collector resends).",
            Query(f"sum(increase({m.EVENTS_DUPLICATE}[1h]))"),
        ),
        graph(
            "Follow-up completeness per stream",
            f"Target {FOLLOWUP_TARGET:.0%}.",
            [
                Query(
                    f"{worker_metrics.FOLLOWUP_COMPLETENESS}{{{sel}}}",
                    "{{site_id}} {{device_version}}",
                )
            ],
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Dead-lettered records per hour by reason",
            "Invalid input never crashes a worker; it is counted here by source topic and reason.",
            [
                Query(
                    f"sum by (topic, reason) (increase({m.EVENTS_DEADLETTERED}[1h]))",
                    "{{topic}} {{reason}}",
                )
            ],
        ),
        graph(
            "Refused (unauthentic) records per hour by claimed site and reason",
            "Records the workers refused as not provably from the site they claim (unsigned, "
            "unknown or revoked key, another site's key, bad signature), for every site "
            "whatever the selection; 'unknown' is a claimed site with no registered key. "
            "They are dead-lettered with reason authenticity and count nowhere.",
            [
                Query(
                    f"sum by (site_id, reason) (increase({m.EVENTS_UNAUTHENTIC}[1h]))",
                    "{{site_id}} {{reason}}",
                )
            ],
        ),
        graph(
            "Consumer lag by topic",
            "Records the worker group has not committed yet (end - committed offset), summed "
            "over the partitions; a steady climb means the workers do not keep up.",
            [Query(f"sum by (group, topic) ({m.CONSUMER_LAG})", "{{group}} {{topic}}")],
        ),
        graph(
            "Pipeline latency to an outcome (p50, p95)",
            "Seconds from the collector sending the record that completed a case's join to the "
            "worker emitting its outcome (excludes the clinical wait for ground truth).",
            [
                Query(
                    f"histogram_quantile({q}, sum by (le) (rate({m.OUTCOME_LATENCY_BUCKET}[5m])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95)
            ],
            unit="s",
        ),
    ]
    performance = [
        graph(
            "Sensitivity with 95% interval against the claim",
            "Observed sensitivity (estimate, lower and upper Wilson bounds) per stream, and the "
            "sensitivity registered for the version.",
            _performance("sensitivity"),
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Specificity with 95% interval against the claim",
            "Observed specificity (estimate, lower and upper Wilson bounds) per stream, and the "
            "specificity registered for the version.",
            _performance("specificity"),
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        instant_table(
            "Confusion matrix per stream",
            "Outcomes by cell: tp and fn among positives, tn and fp among negatives.",
            [
                Query(
                    f"sum by ({STREAM}, cell) ({m.STREAM_CONFUSION}{{{sel}}})",
                )
            ],
        ),
    ]
    detectors = [
        graph(
            "Detector statistic against its threshold",
            "Each labelled detector's statistic and the threshold at which it signals.",
            [
                Query(
                    f"{m.DETECTOR_STATISTIC}{{{sel}}}",
                    "{{site_id}} {{device_version}} {{detector}}",
                ),
                Query(
                    f"{m.DETECTOR_THRESHOLD}{{{sel}}}",
                    "{{site_id}} {{device_version}} {{detector}} threshold",
                ),
            ],
        ),
        graph(
            "Detector statistic as a share of its threshold",
            "1 means the detector signals; streams near 1 are close to an alert.",
            [
                Query(
                    f"max by ({STREAM}, detector) ({m.DETECTOR_STATISTIC}{{{sel}}})"
                    f" / max by ({STREAM}, detector) ({m.DETECTOR_THRESHOLD}{{{sel}}})",
                    "{{site_id}} {{device_version}} {{detector}}",
                )
            ],
            unit="percentunit",
        ),
        instant_table(
            "Re-baselined streams",
            "Re-baselining decisions the running workers applied (postmarket alerts "
            "rebaseline): the stream's score and acquisition drift tests restarted against "
            "a reference of its predictions since. The claims are never re-baselined.",
            [Query(f"sum by ({STREAM}) ({m.STREAM_REBASELINES}{{{sel}}}) > 0")],
        ),
    ]
    alerts = [
        graph(
            "False alarms a year: the budget, as designed, and alerts raised",
            "The surveillance plan's fleet budget; what the running streams' tests are "
            "designed to raise at most while every site performs at or above its acceptable "
            "levels (above the budget: more streams than planned); and every alert raised "
            "over the last year, true or false, for comparison.",
            [
                Query(f"max({m.FLEET_FALSE_ALARM_BUDGET})", "budget"),
                Query(f"sum({m.STREAM_EXPECTED_FALSE_ALARMS}{{{sel}}})", "expected as designed"),
                Query(f"sum(increase({m.ALERTS}{{{sel}}}[365d]))", "alerts raised in a year"),
            ],
            width=24,
        ),
        graph(
            "Alerts raised per hour by severity",
            "Alerts the workers raised (detectors and unregistered changes).",
            [
                Query(
                    f"sum by (severity) (increase({m.ALERTS}{{{sel}}}[1h]))",
                    "{{severity}}",
                )
            ],
            width=8,
        ),
        instant_table(
            "Alerts raised by stream and detector",
            "Alerts counted by the running workers since they started.",
            [Query(f"sum by ({STREAM}, detector, severity) ({m.ALERTS}{{{sel}}}) > 0")],
            width=16,
        ),
    ]
    dashboard = (
        dashboard_builders.Dashboard(TITLE)
        .uid(UID)
        .description("Manufacturer view of the deployed fleet: per device, version and site.")
        .tags(["postmarket", "manufacturer"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(stream_variables(m.PREDICTIONS))
        .link(link("Regulator evidence", "postmarket-regulator"))
        .link(link("Site collector health", "postmarket-site-collector"))
    )
    return assemble(
        dashboard,
        [
            ("Volumes and data quality", volumes),
            ("Performance against the registered claim", performance),
            ("Detectors", detectors),
            ("Alerts", alerts),
        ],
    )
