"""Turning a detector's signal into an alert with the evidence it rests on."""

from __future__ import annotations

import uuid
from datetime import datetime

from postmarket.contracts.events import Alert, Severity, StreamKey
from streams.performance import Signal, StreamMonitor

ALERT_NAMESPACE = uuid.UUID("0b6f3c1e-52a4-4d0e-9e55-2f7d8c1a9b30")

SEVERITY_BY_KIND: dict[str, Severity] = {
    "cusum": "warning",
    "claims_test": "critical",
    "score_drift": "warning",
}
"""A CUSUM says performance moved; the claims test says it is below what was registered."""


def alert_for(
    stream: StreamKey, signal: Signal, monitor: StreamMonitor, raised_at: datetime
) -> Alert:
    """The alert of one signal; its id is derived from the stream, the detector and how many
    outcomes and predictions the stream had, so a replayed signal yields the same alert id."""
    kind = signal.detector.removeprefix(f"{signal.metric}_")
    result = signal.result
    first = monitor.first_case_time or raised_at
    last = monitor.last_case_time or raised_at
    return Alert(
        alert_id=uuid.uuid5(
            ALERT_NAMESPACE,
            f"{stream.as_key()}|{signal.detector}|{monitor.outcomes}|{monitor.predictions}",
        ),
        stream=stream,
        detector=signal.detector,
        statistic=result.statistic,
        threshold=result.threshold,
        evidence={
            "charted_cases": result.n_cases,
            "adverse_events": result.n_events,
            "run_length": result.run_length,
            "true_positives": monitor.true_positives,
            "false_negatives": monitor.false_negatives,
            "true_negatives": monitor.true_negatives,
            "false_positives": monitor.false_positives,
            # Which of the stream's predictions it had seen: where in the stream it fired.
            "stream_predictions": monitor.predictions,
        },
        first_case_time=first,
        last_case_time=last,
        raised_at=raised_at,
        severity=SEVERITY_BY_KIND.get(kind, "warning"),
        message=_message(stream, signal),
    )


def _message(stream: StreamKey, signal: Signal) -> str:
    result = signal.result
    where = f"{stream.device_id} {stream.device_version} at {stream.site_id} ({stream.task})"
    test = f"{signal.detector} {result.statistic:.3f} >= {result.threshold:.3f}"
    if signal.claimed is None:
        return (
            f"{signal.metric.replace('_', ' ')} of {where} moved away from the stream's "
            f"reference: {test} over {result.n_cases} predictions (no labels needed)"
        )
    return (
        f"{signal.metric} of {where} below the registered {signal.claimed:.3f}: "
        f"{test} after {result.n_cases} charted cases"
    )
