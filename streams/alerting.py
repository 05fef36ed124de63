"""Turning a detector's signal into an alert with the evidence it rests on."""

from __future__ import annotations

import uuid
from datetime import datetime

from postmarket.claim_levels import ChartLevels
from postmarket.contracts.events import Alert, Severity, StreamKey
from streams.detector_design import is_label_free
from streams.stream_monitor import UNMONITORED_STREAM, Signal, StreamMonitor

ALERT_NAMESPACE = uuid.UUID("0b6f3c1e-52a4-4d0e-9e55-2f7d8c1a9b30")

SEVERITY_BY_KIND: dict[str, Severity] = {
    "cusum": "warning",
    "claims_test": "critical",
    "score_drift": "warning",
    "estimate": "warning",
    UNMONITORED_STREAM: "critical",
}
"""A CUSUM says performance moved; the claims test says it is below what was registered.
The label-free tests (drift, the estimate from scores) and the calibration test warn. A
stream with a claim no chart can monitor is as serious as a failed claim: nothing watches it."""


def alert_for(
    stream: StreamKey, signal: Signal, monitor: StreamMonitor, raised_at: datetime
) -> Alert:
    """The alert of one signal; its id is derived from the stream, the detector and how many
    cases of the kind it charts the stream had (outcomes, or predictions for a label-free
    test), so a replayed signal yields the same alert id: each kind's count is restored
    from its own table state (:meth:`StreamMonitor.to_states`). A stream is unmonitored once:
    that alert's id is the stream's own."""
    kind = signal.detector.removeprefix(f"{signal.metric}_")
    charted = monitor.predictions if is_label_free(signal.detector) else monitor.outcomes
    if signal.detector == UNMONITORED_STREAM:
        charted = 0
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
        message=_message(stream, signal, _levels_of(signal, monitor)),
        change_began_at=signal.change_began_at,
    )


def _levels_of(signal: Signal, monitor: StreamMonitor) -> ChartLevels | None:
    return next((lv for metric, lv in monitor.levels.items() if metric == signal.metric), None)


def _message(stream: StreamKey, signal: Signal, levels: ChartLevels | None) -> str:
    result = signal.result
    where = f"{stream.device_id} {stream.device_version} at {stream.site_id} ({stream.task})"
    if signal.detector == UNMONITORED_STREAM:
        return (
            f"{where} is not fully monitored: {signal.reason}. Its other tests still run; "
            "register a claim a chart can monitor, or set an explicit acceptable level"
        )
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
    if is_label_free(signal.detector) and signal.claimed is not None and levels is not None:
        return (
            f"estimated {signal.metric} of {where} below the rejectable {levels.rejectable:.3f} "
            f"(registered {signal.claimed:.3f}, acceptable {levels.acceptable:.3f}): {test} over "
            f"{result.n_cases} predictions, from their calibrated scores (no labels needed)"
        )
    if signal.claimed is None:
        return (
            f"{signal.metric.replace('_', ' ')} of {where} moved away from the stream's "
            f"reference: {test} over {result.n_cases} predictions (no labels needed)"
        )
    acceptable = (
        f"the acceptable {levels.acceptable:.3f} ({levels.basis} of the registered "
        f"{signal.claimed:.3f})"
        if levels is not None
        else f"the registered {signal.claimed:.3f}"
    )
    charted = f"after {result.n_cases} charted cases"
    return f"{signal.metric} of {where} below {acceptable}: {test} {charted}{_change(signal)}"


def _change(signal: Signal) -> str:
    """Where a CUSUM places the change: ``; CUSUM estimate: the change began 57 charted
    cases back (the alarm's included), at the case of 2026-03-02 10:15 UTC``; nothing for
    other tests. The time is absent when the stream's state did not keep it."""
    if not signal.detector.endswith("_cusum") or signal.result.run_length < 1:
        return ""
    cases = signal.result.run_length
    plural = "s" if cases > 1 else ""
    began = f"; CUSUM estimate: the change began {cases} charted case{plural} back"
    began += " (the alarm's included)"
    if signal.change_began_at is not None:
        began += f", at the case of {signal.change_began_at:%Y-%m-%d %H:%M %Z}".rstrip()
    return began
