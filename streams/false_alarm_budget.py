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
  of looks; it restarts at the start of each surveillance year of its stream, and after a
  rejection once a decision shows the stream was reviewed (see
  :meth:`streams.stream_monitor.StreamMonitor.restart_after_review`). Each restart is a new test
  on new cases, and follows a rejection, so a stream's claims test rejects falsely at most
  ``alpha + alpha^2 + ... = alpha / (1 - alpha)`` times a year in expectation, however many
  reviews there are; ``alpha = s / (1 + s)`` makes that the test's share ``s = B / (K D)``.

Expected false alarms add up over tests whatever their dependence, so the fleet expects at
most ``B`` a year (each chart's ARL0 is the smallest lattice value at or above its target,
so a little less) while every site performs at or above its acceptable levels, as planned.
A stream busier than planned raises proportionally more; the plan's volume is the one to
keep current.

The pooled per-version stage (:mod:`streams.pooled`) spends its part of the same budget. The
plan also names ``G``, the (device, version, task) groups in service, each with ``P = 4``
pooled tests (a multi-chart CUSUM and a claims test per claimed metric, on the counts of all
the group's sites). Every test of the fleet, per stream or pooled, gets the same part
``B / (K D + G P)``: adding the pooled stage lowers every per-stream test's part a little
(from ``B / (K D)``), so the fleet's total stays ``B``. A pooled chart charts the cases of
``K / G`` sites at the plan's volume each, so its ARL0 is ``K / G`` times a stream chart's in
the same unit (``v (K / G) (K D + G P) / B``); a pooled claims test has the same alpha as a
stream's. With the default plan (``B = 10``, ``K = 100``, ``D = 9``, ``G = 10``) the pooled
stage spends 40 of 940 parts: 0.43 of the 10 expected false alarms a year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["POOLED_TESTS_PER_GROUP", "FleetBudget", "Unit"]

Unit = Literal["positives", "negatives", "outcomes", "predictions"]
"""What a test counts: referable cases with truth, non-referable ones, all cases with truth,
or predictions."""

POOLED_TESTS_PER_GROUP = 4
"""Tests the pooled stage runs per (device, version, task) with both metrics claimed: a
multi-chart CUSUM and a claims test per claimed metric."""


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

    With the pooled stage planned for 10 (device, version, task) groups, each test's part
    shrinks to 10 / 940 and a pooled chart charts ten sites' cases:

    >>> pooled = FleetBudget(10, 100, 10_000, 0.8, pooled_groups=10)
    >>> round(pooled.share_per_test(tests_per_stream=9), 5)
    0.01064
    >>> round(pooled.pooled_arl0("positives", prevalence=0.25, tests_per_stream=9))
    1880000
    >>> round(pooled.pooled_false_alarms_per_year(tests_per_stream=9), 3)
    0.426
    """

    false_alarms_per_year: float
    streams: int
    predictions_per_stream_year: float
    followup_completeness: float
    pooled_groups: int = 0
    """(device, version, task) groups the pooled stage tests across sites; 0: a plan that
    does not count the pooled stage (one from before it)."""

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
        if isinstance(self.pooled_groups, bool) or not (
            isinstance(self.pooled_groups, int) and self.pooled_groups >= 0
        ):
            raise ValueError(f"pooled_groups must be an integer >= 0, got {self.pooled_groups!r}")

    def share_per_test(self, tests_per_stream: int) -> float:
        """Expected false alarms a year each test, per stream or pooled, may raise."""
        if tests_per_stream < 1:
            raise ValueError(f"tests_per_stream must be >= 1, got {tests_per_stream}")
        tests = self.streams * tests_per_stream + self.pooled_groups * POOLED_TESTS_PER_GROUP
        return self.false_alarms_per_year / tests

    def pooled_arl0(self, unit: Unit, prevalence: float, tests_per_stream: int) -> float:
        """The in-control ARL, in ``unit``, of one pooled chart: one test's share spent on the
        cases of a group's ``streams / pooled_groups`` sites (one group if none is planned)."""
        sites_per_group = self.streams / max(self.pooled_groups, 1)
        return sites_per_group * self.arl0(unit, prevalence, tests_per_stream)

    def pooled_false_alarms_per_year(self, tests_per_stream: int) -> float:
        """What the whole pooled stage may raise a year: its tests' parts."""
        share = self.share_per_test(tests_per_stream)
        return self.pooled_groups * POOLED_TESTS_PER_GROUP * share

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
        """A claims test's error rate: ``s / (1 + s)`` for one test's share ``s``, so that the
        test and its restarts after reviewed rejections, each a new test, expect at most
        ``alpha / (1 - alpha) = s`` false rejections a year (at most 0.5: then at most 1).

        >>> budget = FleetBudget(10, 100, 10_000, 0.8)
        >>> share, alpha = budget.share_per_test(9), budget.alpha(9)
        >>> round(alpha, 6), round(alpha / (1 - alpha), 6) == round(share, 6)
        (0.010989, True)
        """
        share = self.share_per_test(tests_per_stream)
        return min(share / (1.0 + share), 0.5)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
