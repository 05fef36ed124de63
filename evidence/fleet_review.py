"""Site against fleet, on a timer: a site whose performance falls below the fleet's funnel.

A worker sees one stream at a time (its partitions), so comparing a site with the rest of
the fleet running the same version needs every site's outcomes: the evidence store has
them, aggregated in SQL per version, task and site (:meth:`EvidenceStore.site_counts`), so
a review reads one row per site, not the whole history. :func:`site_vs_fleet_alerts` turns
the report's per-site analysis (funnel limits at 99.8 % coverage around the fleet's
proportion, so a fleet of many sites does not flag one by chance every week) into alerts,
one per site and metric below the funnel. Every finding is stored, as a worker's alerts are:
the store opens a new alert, or, while the site's alert is unresolved, keeps the finding as
a recurrence of it.

The alert id is derived from the stream, the detector and the case counts, so the same
data reviewed twice (again, or by two evidence sinks) is stored once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from detectors.statistics import funnel_plot_limits
from evidence.report_outcomes import Proportion
from evidence.report_sites import FUNNEL_COVERAGE, SiteRow, funnel_analysis
from evidence.store import EvidenceStore, SiteCounts
from postmarket.contracts.events import Alert, StreamKey

FLEET_ALERT_NAMESPACE = uuid.UUID("5d0b8a52-7f5e-4d8c-a8f1-3c2b9e6f0d17")
DETECTOR_SUFFIX = "site_vs_fleet"
MIN_SITES = 3
"""A "fleet" of fewer sites is mostly the site itself: no comparison below this."""
ACTOR = "evidence-sink:fleet-review"


def detector_name(metric: str) -> str:
    return f"{metric}_{DETECTOR_SUFFIX}"


def site_vs_fleet_alerts(
    device_id: str,
    counts: Sequence[SiteCounts],
    raised_at: datetime,
) -> list[Alert]:
    """Alerts for sites below the fleet's funnel, one per site and metric.

    ``counts`` are the device's per-site counts: from the store's SQL aggregate
    (:meth:`EvidenceStore.site_counts`) or from outcomes
    (:func:`~evidence.report_sites.site_counts`).
    """
    rows, pooled = funnel_analysis(counts)
    fleets = {(h.version, h.task, h.metric): h.fleet for h in pooled}
    spans = {(c.version, c.task, c.site): c for c in counts}
    sites_per_version: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.version, row.task)
        sites_per_version[key] = sites_per_version.get(key, 0) + 1
    alerts = []
    for row in rows:
        if sites_per_version[(row.version, row.task)] < MIN_SITES:
            continue
        for metric, position in row.funnel.items():
            stream = StreamKey(
                device_id=device_id, device_version=row.version, site_id=row.site, task=row.task
            )
            if position != "below":
                continue
            fleet = fleets[(row.version, row.task, metric)]
            span = spans[(row.version, row.task, row.site)]
            alerts.append(_alert(stream, metric, row, fleet, span, raised_at))
    return alerts


def _alert(
    stream: StreamKey,
    metric: str,
    row: SiteRow,
    fleet: Proportion,
    span: SiteCounts,
    raised_at: datetime,
) -> Alert:
    site = row.metrics[metric]
    target = fleet.estimate or 0.0
    lower, _ = funnel_plot_limits(target, [site.n], FUNNEL_COVERAGE)
    detector = detector_name(metric)
    return Alert(
        alert_id=uuid.uuid5(
            FLEET_ALERT_NAMESPACE,
            f"{stream.as_key()}|{detector}|{site.n}|{fleet.n}",
        ),
        stream=stream,
        detector=detector,
        statistic=site.estimate or 0.0,
        threshold=float(lower[0]),
        evidence={
            "site_successes": site.successes,
            "site_cases": site.n,
            "fleet_successes": fleet.successes,
            "fleet_cases": fleet.n,
        },
        first_case_time=span.first_case_time,
        last_case_time=span.last_case_time,
        raised_at=raised_at,
        severity="warning",
        message=(
            f"{metric} at {row.site} is {site.estimate:.1%} over {site.n} cases, below the "
            f"{FUNNEL_COVERAGE:.1%} funnel limit {float(lower[0]):.1%} around the fleet's "
            f"{target:.1%} for version {row.version}"
        ),
    )


def review_fleet(store: EvidenceStore, raised_at: datetime) -> list[Alert]:
    """Compare every device's sites with their fleet; store the findings and return those
    not stored before (new alerts and recurrences of unresolved ones)."""
    stored = []
    for device_id in store.field_devices():
        counts = store.site_counts(device_id)
        for alert in site_vs_fleet_alerts(device_id, counts, raised_at):
            if store.record_alert(alert, actor=ACTOR):
                stored.append(alert)
    return stored
