"""Turning a detector's signal into an alert with the evidence it rests on."""

from __future__ import annotations

import uuid
from datetime import datetime

from postmarket.contracts.events import Alert, Severity, StreamKey
from streams.performance import Signal, StreamMonitor, is_label_free

ALERT_NAMESPACE = uuid.UUID("0b6f3c1e-52a4-4d0e-9e55-2f7d8c1a9b30")

SEVERITY_BY_KIND: dict[str, Severity] = {
    "cusum": "warning",
    "claims_test": "critical",
    "score_drift": "warning",
    "estimate": "warning",
}
"""A CUSUM says performance moved; the claims test says it is below what was registered.
The label-free tests (drift, the estimate from scores) and the calibration test warn."""


def alert_for(
    stream: StreamKey, signal: Signal, monitor: StreamMonitor, raised_at: datetime
) -> Alert:
    """The alert of one signal; its id is derived from the stream, the detector and how many
    cases of the kind it charts the stream had (outcomes, or predictions for a label-free
    test), so a replayed signal yields the same alert id: each kind's count is restored
    from its own table state (:meth:`StreamMonitor.to_states`)."""
    kind = signal.detector.removeprefix(f"{signal.metric}_")
    charted = monitor.predictions if is_label_free(signal.detector) else monitor.outcomes
    result = signal.result
    first = monitor.first_case_time or raised_at
    last = monitor.last_case_time or raised_at
    return Alert(
        alert_id=uuid.uuid5(
            ALERT_NAMESPACE,
            f"{stream.as_key()}|{signal.detector}|{charted}",
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
        message=_message(stream, signal, _tolerance(signal, monitor)),
    )


def _message(stream: StreamKey, signal: Signal, tolerance: float) -> str:
    result = signal.result
    where = f"{stream.device_id} {stream.device_version} at {stream.site_id} ({stream.task})"
    test = f"{signal.detector} {result.statistic:.3f} >= {result.threshold:.3f}"
    if signal.metric == "acquisition":
        dimension = signal.detector.removesuffix("_drift").replace("_", " ")
        unseen = f"{result.n_events} of {result.n_cases} predictions in a {dimension} the "
        if result.statistic < result.threshold:
            return f"{unseen}stream's reference never saw, at {where} (no labels needed)"
        return (
            f"{dimension} mix of {where} moved away from the stream's reference: {test} over "
            f"{result.n_cases} predictions, {unseen}reference never saw (no labels needed)"
        )
    if signal.metric == "calibration":
        return (
            f"scores of {where} no longer calibrated: positives differ from what the scores "
            f"predict, {test} over {result.n_cases} outcomes (label-free estimates of this "
            "stream assume calibration)"
        )
    if is_label_free(signal.detector) and signal.claimed is not None:
        return (
            f"estimated {signal.metric} of {where} more than {tolerance:.3f} below the "
            f"registered {signal.claimed:.3f}: {test} over {result.n_cases} predictions, from "
            "their calibrated scores (no labels needed)"
        )
    if signal.claimed is None:
        return (
            f"{signal.metric.replace('_', ' ')} of {where} moved away from the stream's "
            f"reference: {test} over {result.n_cases} predictions (no labels needed)"
        )
    return (
        f"{signal.metric} of {where} below the registered {signal.claimed:.3f}: "
        f"{test} after {result.n_cases} charted cases"
    )


def _tolerance(signal: Signal, monitor: StreamMonitor) -> float:
    """How far below the claim a label-free estimate must be to warn (see MonitorPolicy)."""
    policy = monitor.policy
    return policy.sensitivity_drop if signal.metric == "sensitivity" else policy.specificity_drop
