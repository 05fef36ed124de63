"""What a stream charts of its version's registration: the claimed sensitivity and
specificity of its task, and the level each chart is designed at.

A claim's acceptable level is what every labelled chart and claims test treats as in
control, its rejectable level the one charted fastest (:mod:`postmarket.claim_levels`); a
claim no chart can monitor is kept with why, for the stream to raise.
"""

from __future__ import annotations

from dataclasses import replace

from postmarket.claim_levels import ChartLevels, UnmonitorableClaim, chart_levels
from postmarket.contracts.events import Claim, RegistryEntry
from streams.monitor_policy import ClaimedMetric, MonitorPolicy


def _charted_claims(entry: RegistryEntry | None, task: str) -> list[tuple[ClaimedMetric, Claim]]:
    if entry is None or entry.registration_status != "registered":
        return []
    return [
        (metric, claim)
        for claim in entry.claims
        if claim.task == task and (metric := _charted(claim.metric)) is not None
    ]


def _charted(metric: str) -> ClaimedMetric | None:
    """The metric as a charted one, or None for a claim no chart tests (ppv, npv, auc)."""
    if metric == "sensitivity":
        return "sensitivity"
    if metric == "specificity":
        return "specificity"
    return None


def claimed_performance(entry: RegistryEntry | None, task: str) -> dict[ClaimedMetric, float]:
    """The registered sensitivity and specificity claims of one task of a version."""
    return {metric: claim.value for metric, claim in _charted_claims(entry, task)}


def claimed_lower_bounds(entry: RegistryEntry | None, task: str) -> dict[ClaimedMetric, float]:
    """The lower confidence bounds of those claims: the default acceptable levels."""
    return {metric: claim.ci_lower for metric, claim in _charted_claims(entry, task)}


def design_levels(
    claims: dict[ClaimedMetric, float],
    lower_bounds: dict[ClaimedMetric, float],
    policy: MonitorPolicy,
) -> tuple[dict[ClaimedMetric, ChartLevels], dict[ClaimedMetric, str]]:
    """Each claimed metric's acceptable and rejectable level, or why it has none.

    A claim without a known lower bound (a stream state from before the bound was kept) is
    charted at its point estimate, as it always was."""
    levels: dict[ClaimedMetric, ChartLevels] = {}
    unmonitored: dict[ClaimedMetric, str] = {}
    for metric, claimed in sorted(claims.items()):
        lower = lower_bounds.get(metric)
        rule = policy.level_policy()
        if lower is None:
            rule = replace(rule, acceptable="point_estimate")
        try:
            levels[metric] = chart_levels(
                metric, claimed, claimed if lower is None else lower, rule
            )
        except UnmonitorableClaim as reason:
            unmonitored[metric] = str(reason)
    return levels, unmonitored
