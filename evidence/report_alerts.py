"""What an alert observed: the value of its metric behind its statistic, from the counts in
its evidence, and whether it belongs to a report's period."""

from __future__ import annotations

from datetime import datetime

from evidence.report_outcomes import METRICS, Proportion
from evidence.store import AlertView
from postmarket.contracts.events import Alert

_ALERT_SUCCESSES = {
    "sensitivity": ("true_positives", "false_negatives"),
    "specificity": ("true_negatives", "false_positives"),
    "ppv": ("true_positives", "false_positives"),
    "npv": ("true_negatives", "false_negatives"),
}
"""Metric -> (successes, failures) among the confusion counts of an alert's evidence."""


def alert_observation(alert: Alert) -> Proportion | None:
    """The observed value behind an alert's statistic, from the counts in its evidence.

    A stream's own confusion counts for its metric, or a fleet review's site counts; None
    when the evidence holds no cases of the metric (label-free tests, unmonitored streams).
    """
    evidence = alert.evidence
    metric = alert_metric(alert)
    if "site_cases" in evidence:
        successes, n = evidence.get("site_successes", 0), evidence["site_cases"]
    elif metric in _ALERT_SUCCESSES:
        hit, miss = _ALERT_SUCCESSES[metric]
        successes = evidence.get(hit, 0)
        n = successes + evidence.get(miss, 0)
    else:
        return None
    return Proportion.of(successes, n) if n > 0 else None


def alert_metric(alert: Alert) -> str | None:
    """The performance metric an alert's detector charts (``sensitivity_cusum``: sensitivity)."""
    return next((m for m in METRICS if alert.detector.startswith(f"{m}_")), None)


def observation_sentence(alert: Alert) -> str | None:
    """``observed sensitivity 0.79 over 312 cases``, or None without such counts."""
    observed = alert_observation(alert)
    if observed is None or observed.estimate is None:
        return None
    return f"observed {alert_metric(alert)} {observed.estimate:.2f} over {observed.n} cases"


def change_point(alert: Alert) -> tuple[int, datetime | None] | None:
    """Where a CUSUM's alert places the change: the charted cases from the estimated start to
    the alarm, the alarm's included (``evidence["run_length"]``), and that start's event time
    when the alert carries it; None for other tests."""
    cases = alert.evidence.get("run_length", 0)
    if not alert.detector.endswith("_cusum") or cases < 1:
        return None
    return cases, alert.change_began_at


def change_point_sentence(alert: Alert) -> str | None:
    """``change began 57 charted cases back (CUSUM estimate), at the case of 2026-03-02
    10:15 UTC``, or None for an alert that is not a CUSUM's."""
    change = change_point(alert)
    if change is None:
        return None
    cases, began = change
    sentence = f"change began {cases} charted case{'s' if cases > 1 else ''} back (CUSUM estimate)"
    return sentence + (f", at the case of {began:%Y-%m-%d %H:%M %Z}".rstrip() if began else "")


def alert_in_window(view: AlertView, begin: datetime, stop: datetime) -> bool:
    """Whether the alert's cases, or its recurrences, overlap ``[begin, stop)``: a problem
    first alerted before the window and still signalling in it is reported."""
    latest = max(view.alert.last_case_time, view.last_recurred_at or view.alert.last_case_time)
    return view.alert.first_case_time < stop and latest >= begin
