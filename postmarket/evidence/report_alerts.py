"""What an alert observed: the value of its metric behind its statistic, from the counts in
its evidence, and whether it belongs to a report's period."""

from __future__ import annotations

from datetime import datetime

from postmarket.contracts.events import Alert
from postmarket.evidence.report_outcomes import METRICS, Proportion
from postmarket.evidence.store import AlertView

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


def alert_in_window(view: AlertView, begin: datetime, stop: datetime) -> bool:
    """Whether the alert's cases, or its recurrences, overlap ``[begin, stop)``: a problem
    first alerted before the window and still signalling in it is reported."""
    latest = max(view.alert.last_case_time, view.last_recurred_at or view.alert.last_case_time)
    return view.alert.first_case_time < stop and latest >= begin
