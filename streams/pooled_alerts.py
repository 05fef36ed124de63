"""The alert of a pooled signal: on the version's pooled stream key, naming the version and
the sites that contributed, with each site's outcome count in its evidence."""

from __future__ import annotations

import uuid
from datetime import datetime

from postmarket.contracts.events import Alert, Severity, StreamKey
from streams.alerting import ALERT_NAMESPACE
from streams.monitor_policy import CHARTED_METRICS
from streams.pooled import POOLED_DETECTOR_PREFIX, POOLED_SITE, PooledMonitor
from streams.stream_monitor import Signal

MAX_LISTED_SITES = 20
"""Sites named in a pooled alert's message (its evidence lists up to MAX_EVIDENCE_SITES)."""
MAX_EVIDENCE_SITES = 500
"""Sites whose contributions a pooled alert's evidence lists (largest first): a bounded
record whatever the fleet's size."""
SITE_EVIDENCE_PREFIX = "site:"
"""Evidence key of a contributing site's outcome count (``site:site-a``)."""
SEVERITY_BY_KIND: dict[str, Severity] = {"cusum": "warning", "claims_test": "critical"}


def pooled_stream(stream: StreamKey) -> StreamKey:
    """The stream key of a pooled alert: the version and task, at :data:`POOLED_SITE`."""
    return stream.model_copy(update={"site_id": POOLED_SITE})


def group_stream(key: str) -> StreamKey:
    """The pooled stream key of a group key ``device|version|task``."""
    device_id, device_version, task = key.split("|")
    return StreamKey(
        device_id=device_id, device_version=device_version, site_id=POOLED_SITE, task=task
    )


def pooled_alert(
    stream: StreamKey, signal: Signal, monitor: PooledMonitor, raised_at: datetime
) -> Alert:
    """The alert of a pooled signal on ``stream``'s version: on the version's pooled stream
    key (site :data:`POOLED_SITE`, so every reader of alerts takes it as it is), naming the
    version and the contributing sites in its message, with each site's outcome count in its
    evidence (``site:<id>``). Its id follows from the pooled outcome count, so the same
    tallies read again after a crash raise the same id."""
    group = pooled_stream(stream)
    result = signal.result
    tp, fn, tn, fp = monitor.counts.totals()
    contributions = sorted(
        monitor.counts.sites.items(), key=lambda item: (-item[1].sequence, item[0])
    )
    evidence = {
        "charted_cases": result.n_cases,
        "adverse_events": result.n_events,
        "run_length": result.run_length,
        "true_positives": tp,
        "false_negatives": fn,
        "true_negatives": tn,
        "false_positives": fp,
        "sites": len(contributions),
    }
    for site, tally in contributions[:MAX_EVIDENCE_SITES]:
        key = f"{SITE_EVIDENCE_PREFIX}{site}"
        if len(key) <= 128:  # an evidence key is an identifier; a longer site is in the message
            evidence[key] = tally.sequence
    times = monitor.counts.case_times() or (raised_at, raised_at)
    kind = signal.detector.removeprefix(f"{POOLED_DETECTOR_PREFIX}{signal.metric}_")
    return Alert(
        alert_id=uuid.uuid5(
            ALERT_NAMESPACE, f"{group.as_key()}|{signal.detector}|{monitor.outcomes}"
        ),
        stream=group,
        detector=signal.detector,
        statistic=result.statistic,
        threshold=result.threshold,
        evidence=evidence,
        first_case_time=times[0],
        last_case_time=times[1],
        raised_at=raised_at,
        severity=SEVERITY_BY_KIND.get(kind, "warning"),
        message=_pooled_message(stream, signal, monitor, [site for site, _ in contributions]),
        change_began_at=signal.change_began_at,
    )


def _pooled_message(
    stream: StreamKey, signal: Signal, monitor: PooledMonitor, sites: list[str]
) -> str:
    result = signal.result
    level = monitor.levels.get(signal.metric) if signal.metric in CHARTED_METRICS else None
    acceptable = (
        f"the acceptable {level.acceptable:.3f} ({level.basis} of the registered "
        f"{signal.claimed:.3f})"
        if level is not None and signal.claimed is not None
        else "its acceptable level"
    )
    named = ", ".join(sites[:MAX_LISTED_SITES])
    if len(sites) > MAX_LISTED_SITES:
        named += f" and {len(sites) - MAX_LISTED_SITES} more"
    test = f"{signal.detector} {result.statistic:.3f} >= {result.threshold:.3f}"
    began = ""
    if signal.change_began_at is not None:
        began = (
            f"; CUSUM estimate: the change began {result.run_length} pooled charted cases "
            f"back, counted after {signal.change_began_at:%Y-%m-%d %H:%M %Z}".rstrip()
        )
    return (
        f"{signal.metric} of {stream.device_id} {stream.device_version} ({stream.task}) "
        f"pooled across {len(sites)} sites ({named}) below {acceptable}: {test} after "
        f"{result.n_cases} charted cases{began}"
    )[:2000]
