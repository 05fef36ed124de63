"""What a registered claim promises the field: the acceptable and the rejectable level.

A registration study measured, say, sensitivity 0.872 with 95 % CI 0.818-0.914. A site in
the field is not out of control because its true sensitivity is 0.85: that value is inside
what the study demonstrated, and sites differ from the study population. So each labelled
chart monitors the composite hypothesis "performance at or above the *acceptable* level"
and is tuned to detect performance at the *rejectable* level quickly:

- acceptable, by policy: the claim's lower confidence bound (the default: what the
  registration study demonstrated), its point estimate, or an explicit value per metric;
- rejectable: the acceptable level less the metric's tolerated drop, or an explicit value.

A chart's false-alarm guarantee then holds for every site whose true performance is at or
above the acceptable level (its run length only lengthens as performance rises). A claim
whose levels leave no chart possible is refused when registered (:func:`chart_levels` names
why), and a stream that still meets one is raised as unmonitored, never silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = [
    "MAX_ACCEPTABLE",
    "MIN_GAP",
    "MIN_REJECTABLE",
    "AcceptableRule",
    "ChartLevels",
    "LevelPolicy",
    "UnmonitorableClaim",
    "chart_levels",
]

AcceptableRule = Literal["ci_lower", "point_estimate"]
ChartedMetric = Literal["sensitivity", "specificity"]

MAX_ACCEPTABLE = 0.995
"""Above it the in-control error rate (below 0.5 %) leaves a chart with too few events to
tell in-control from not, at any false-alarm rate a fleet can afford."""
MIN_REJECTABLE = 0.01
MIN_GAP = 0.01
"""Acceptable and rejectable closer than this make a chart whose every case is noise."""


class UnmonitorableClaim(ValueError):
    """No chart can monitor this claim under the policy; the message says why."""


@dataclass(frozen=True)
class LevelPolicy:
    """How the acceptable and the rejectable level follow from a claim."""

    acceptable: AcceptableRule = "ci_lower"
    sensitivity_drop: float = 0.07
    specificity_drop: float = 0.05
    explicit_acceptable: tuple[tuple[ChartedMetric, float], ...] = ()
    """Per-metric acceptable levels that override the rule, e.g. (("sensitivity", 0.80),)."""

    def drop(self, metric: ChartedMetric) -> float:
        return self.sensitivity_drop if metric == "sensitivity" else self.specificity_drop


class ChartLevels(NamedTuple):
    """The levels one metric's labelled charts are designed at, and where they came from."""

    acceptable: float
    rejectable: float
    basis: str
    """``ci_lower``, ``point_estimate``, ``explicit``, or a fallback with its reason."""


def chart_levels(
    metric: ChartedMetric, value: float, ci_lower: float, policy: LevelPolicy
) -> ChartLevels:
    """The acceptable and rejectable levels of a claim, or :class:`UnmonitorableClaim`.

    A point estimate of 1 (every case of a small study right) leaves no error rate to be in
    control at; under the point-estimate rule such a claim falls back to its lower
    confidence bound, and the basis says so.

    >>> chart_levels("sensitivity", 0.872, 0.818, LevelPolicy())
    ChartLevels(acceptable=0.818, rejectable=0.748, basis='ci_lower')
    >>> chart_levels("sensitivity", 1.0, 0.94, LevelPolicy(acceptable="point_estimate"))
    ChartLevels(acceptable=0.94, rejectable=0.87, basis='ci_lower (point estimate 1.000 too high)')
    >>> try:
    ...     chart_levels("specificity", 0.999999, 0.9999, LevelPolicy())
    ... except UnmonitorableClaim as reason:
    ...     print(reason)  # doctest: +NORMALIZE_WHITESPACE
    specificity acceptable level 0.9999 (ci_lower) is above 0.995: fewer than 1 in 200 cases
    could be an error, too few to chart
    """
    explicit = dict(policy.explicit_acceptable)
    if metric in explicit:
        acceptable, basis = explicit[metric], "explicit"
    elif policy.acceptable == "point_estimate" and value <= MAX_ACCEPTABLE:
        acceptable, basis = value, "point_estimate"
    elif policy.acceptable == "point_estimate":
        acceptable, basis = ci_lower, f"ci_lower (point estimate {value:.3f} too high)"
    else:
        acceptable, basis = ci_lower, "ci_lower"
    if not MIN_REJECTABLE + MIN_GAP <= acceptable:
        raise UnmonitorableClaim(
            f"{metric} acceptable level {acceptable:g} ({basis}) is below "
            f"{MIN_REJECTABLE + MIN_GAP:g}: no lower level is left to detect"
        )
    if acceptable > MAX_ACCEPTABLE:
        raise UnmonitorableClaim(
            f"{metric} acceptable level {acceptable:g} ({basis}) is above {MAX_ACCEPTABLE:g}: "
            f"fewer than 1 in {round(1 / (1 - MAX_ACCEPTABLE))} cases could be an error, "
            "too few to chart"
        )
    rejectable = max(round(acceptable - policy.drop(metric), 6), MIN_REJECTABLE)
    if acceptable - rejectable < MIN_GAP:
        raise UnmonitorableClaim(
            f"{metric} rejectable level {rejectable:g} is within {MIN_GAP:g} of the "
            f"acceptable {acceptable:g}: a chart cannot tell them apart"
        )
    return ChartLevels(acceptable, rejectable, basis)
