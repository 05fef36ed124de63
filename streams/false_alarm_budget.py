"""One fleet budget of false alarms, shared by every test on every stream, in each test's units.

The surveillance plan fixes in advance how many false alarms a year the whole fleet may raise
(``B``), among how many streams (``K``), and the volume a stream is planned to see: ``n``
predictions a year, a share ``c`` of them followed up to ground truth, a prevalence ``pi``.
Each stream runs ``D`` tests (per claimed metric a multi-chart CUSUM, whose ``J`` CUSUMs
split its part, each designed by exact ARL at ``J`` times the chart's ARL0 so that their
alarm rates add up to at most the chart's: Bonferroni, :mod:`detectors.bernoulli_multi_cusum`;
a claims test and the label-free estimate; the calibration test; the score-drift test; the
acquisition-drift tests, which share one test's part between their dimensions). Every test
gets the same part of the budget, ``B / (K D)`` expected false alarms a year (the
``equal_alarms`` allocation of :mod:`detectors.fleet_false_alarm_budget`: each site's staff
bear the same false-alarm load), which it converts into its own units:

- a chart that restarts after each alarm raises ``v / ARL0`` false alarms a year on ``v``
  charted cases a year (renewal theorem), so its ARL0 is ``v K D / B`` in its units:
  referable cases with truth (``n c pi``) for the sensitivity CUSUM, non-referable ones
  (``n c (1 - pi)``) for specificity, outcomes (``n c``) for the calibration test,
  predictions (``n``) for the label-free tests;
- a claims test fires at most once with probability at most ``alpha`` whatever the number
  of looks; it restarts at the start of each surveillance year of its stream (see
  :class:`streams.performance.StreamMonitor`), so at most ``alpha`` false rejections a year,
  and ``alpha = B / (K D)``.

Expected false alarms add up over tests whatever their dependence, so the fleet expects at
most ``B`` a year (each chart's ARL0 is the smallest lattice value at or above its target,
so a little less) while every site performs at or above its acceptable levels, as planned.
A stream busier than planned raises proportionally more; the plan's volume is the one to
keep current.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["FleetBudget", "Unit"]

Unit = Literal["positives", "negatives", "outcomes", "predictions"]
"""What a test counts: referable cases with truth, non-referable ones, all cases with truth,
or predictions."""


@dataclass(frozen=True)
class FleetBudget:
    """The plan's budget and volumes, and what they give each test.

    >>> budget = FleetBudget(false_alarms_per_year=10, streams=100,
    ...                      predictions_per_stream_year=10_000, followup_completeness=0.8)
    >>> budget.share_per_test(tests_per_stream=9)  # expected false alarms a year, per test
    0.011111111111111112
    >>> round(budget.arl0("positives", prevalence=0.25, tests_per_stream=9))
    180000
    >>> round(budget.arl0("predictions", prevalence=0.25, tests_per_stream=9))
    900000
    """

    false_alarms_per_year: float
    streams: int
    predictions_per_stream_year: float
    followup_completeness: float

    def __post_init__(self) -> None:
        _positive("false_alarms_per_year", self.false_alarms_per_year)
        _positive("predictions_per_stream_year", self.predictions_per_stream_year)
        if isinstance(self.streams, bool) or not (
            isinstance(self.streams, int) and self.streams >= 1
        ):
            raise ValueError(f"streams must be an integer >= 1, got {self.streams!r}")
        if not (
            math.isfinite(self.followup_completeness) and 0.0 < self.followup_completeness <= 1.0
        ):
            raise ValueError(
                f"followup_completeness must lie in (0, 1], got {self.followup_completeness!r}"
            )

    def share_per_test(self, tests_per_stream: int) -> float:
        """Expected false alarms a year each test may raise."""
        if tests_per_stream < 1:
            raise ValueError(f"tests_per_stream must be >= 1, got {tests_per_stream}")
        return self.false_alarms_per_year / (self.streams * tests_per_stream)

    def volume(self, unit: Unit, prevalence: float) -> float:
        """Cases of ``unit`` a stream is planned to see a year."""
        if not (math.isfinite(prevalence) and 0.0 < prevalence < 1.0):
            raise ValueError(f"prevalence must lie in (0, 1), got {prevalence!r}")
        labelled = self.predictions_per_stream_year * self.followup_completeness
        volumes: dict[Unit, float] = {
            "positives": labelled * prevalence,
            "negatives": labelled * (1.0 - prevalence),
            "outcomes": labelled,
            "predictions": self.predictions_per_stream_year,
        }
        return volumes[unit]

    def arl0(self, unit: Unit, prevalence: float, tests_per_stream: int) -> float:
        """The in-control ARL, in ``unit``, that spends one test's share of the budget."""
        return self.volume(unit, prevalence) / self.share_per_test(tests_per_stream)

    def alpha(self, tests_per_stream: int) -> float:
        """A claims test's error rate a surveillance year: one test's share."""
        return min(self.share_per_test(tests_per_stream), 0.5)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
