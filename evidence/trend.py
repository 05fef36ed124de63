"""Trend reporting in the sense of EU MDR Art. 88: a deterioration judged by a method and
periods fixed in advance.

A :class:`TrendPlan` names one metric of one device (optionally one version), a baseline
period, an observation period, the test and its one-sided false-alarm rate. It is stored
before the observation period's data are seen (:mod:`evidence.trend_store`);
changing it afterwards takes an audited amendment, which the trend report shows.

The test: the observation period's error rate (1 - the metric) against the baseline's, by
Fisher's exact test, one-sided (worse only), conditional on the two periods' totals. Under
the null hypothesis (no worse than baseline) it signals with probability at most ``alpha``
per evaluation: that is the false-alarm rate the report states.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the report's statistics import scipy: only when a trend is evaluated
    from evidence.report_outcomes import Proportion
    from evidence.views import OutcomeRecord

Metric = Literal["sensitivity", "specificity", "ppv", "npv"]
METRICS: tuple[Metric, ...] = ("sensitivity", "specificity", "ppv", "npv")
METHOD = (
    "Fisher's exact test, one-sided, of the error rate (1 - metric) in the observation "
    "period against the baseline period"
)
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class PlanError(ValueError):
    """A plan that cannot be stored or used; the message says why."""


@dataclass(frozen=True)
class TrendPlan:
    """A trend analysis fixed in advance (MDR Art. 88: method and observation period)."""

    name: str
    device_id: str
    metric: Metric
    baseline_start: date
    baseline_end: date
    observation_start: date
    observation_end: date
    alpha: float = 0.05
    min_cases: int = 30
    """Fewer cases with truth in either period: no conclusion (too little to test)."""
    version: str | None = None
    """One version's cases only; None pools every version of the device."""

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise PlanError(f"plan name {self.name!r}: lower-case letters, digits, . _ -")
        if self.metric not in METRICS:
            raise PlanError(f"metric {self.metric!r}: one of {', '.join(METRICS)}")
        if not self.baseline_start <= self.baseline_end < self.observation_start:
            raise PlanError("the baseline period must end before the observation period starts")
        if self.observation_end < self.observation_start:
            raise PlanError("the observation period ends before it starts")
        if not 0.0 < self.alpha <= 0.5:
            raise PlanError(f"alpha {self.alpha}: a false-alarm rate in (0, 0.5]")
        if self.min_cases < 1:
            raise PlanError(f"min_cases {self.min_cases}: at least 1")

    def as_json(self) -> dict[str, Any]:
        plain = asdict(self)
        for key in ("baseline_start", "baseline_end", "observation_start", "observation_end"):
            plain[key] = plain[key].isoformat()
        return plain

    @classmethod
    def from_json(cls, plain: dict[str, Any]) -> TrendPlan:
        return cls(
            name=plain["name"],
            device_id=plain["device_id"],
            metric=plain["metric"],
            baseline_start=date.fromisoformat(plain["baseline_start"]),
            baseline_end=date.fromisoformat(plain["baseline_end"]),
            observation_start=date.fromisoformat(plain["observation_start"]),
            observation_end=date.fromisoformat(plain["observation_end"]),
            alpha=float(plain["alpha"]),
            min_cases=int(plain["min_cases"]),
            version=plain.get("version"),
        )


@dataclass(frozen=True)
class Amendment:
    """A stored change of a plan: when, by whom, why, and whether data were seen by then."""

    at: datetime
    by: str
    why: str
    after_data: bool
    """Made on or after the observation period's first day."""


@dataclass(frozen=True)
class TrendResult:
    plan: TrendPlan
    baseline: Proportion
    observation: Proportion
    p_value: float | None
    verdict: str
    """``significant deterioration``, ``no significant deterioration`` or
    ``insufficient data``."""
    amendments: tuple[Amendment, ...] = ()

    @property
    def statement(self) -> str:
        """The method and its false-alarm rate, as the report prints them."""
        return (
            f"{METHOD}; false-alarm rate at most {self.plan.alpha:g} per evaluation when "
            "performance is no worse than baseline"
        )


def in_period(outcome: OutcomeRecord, start: date, end: date) -> bool:
    """By prediction time, both days included (UTC)."""
    return start <= outcome.prediction_time.date() <= end


def evaluate(
    plan: TrendPlan, outcomes: list[OutcomeRecord], amendments: tuple[Amendment, ...] = ()
) -> TrendResult:
    """The plan's test on the device's outcomes (any period; it picks its own)."""
    from evidence.report_outcomes import proportion

    mine = [
        o
        for o in outcomes
        if o.stream.device_id == plan.device_id
        and (plan.version is None or o.stream.device_version == plan.version)
    ]
    baseline = proportion(
        plan.metric, [o for o in mine if in_period(o, plan.baseline_start, plan.baseline_end)]
    )
    observed = proportion(
        plan.metric,
        [o for o in mine if in_period(o, plan.observation_start, plan.observation_end)],
    )
    if min(baseline.n, observed.n) < plan.min_cases:
        return TrendResult(plan, baseline, observed, None, "insufficient data", amendments)
    p_value = deterioration_p_value(baseline, observed)
    verdict = (
        "significant deterioration" if p_value <= plan.alpha else "no significant deterioration"
    )
    return TrendResult(plan, baseline, observed, p_value, verdict, amendments)


def deterioration_p_value(baseline: Proportion, observed: Proportion) -> float:
    """One-sided Fisher p-value that the observed error rate exceeds the baseline's.

    >>> from evidence.report_outcomes import Proportion
    >>> round(deterioration_p_value(Proportion.of(90, 100), Proportion.of(70, 100)), 5)
    0.00033
    """
    from scipy.stats import fisher_exact

    errors = [observed.n - observed.successes, baseline.n - baseline.successes]
    table = [[errors[0], observed.successes], [errors[1], baseline.successes]]
    _, p_value = fisher_exact(table, alternative="greater")
    return float(p_value)
