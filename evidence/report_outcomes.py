"""Field outcomes counted as the report counts them: a metric's successes and cases, their
Wilson interval, and the prospective/retrospective split behind every number."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from detectors.statistics import wilson_interval
from evidence.store import (
    OutcomeRecord,
    SiteCounts,
)

METRICS = ("sensitivity", "specificity", "ppv", "npv")


DESIGNS = ("prospective", "retrospective")


@dataclass(frozen=True)
class DesignCounts:
    """Outcomes behind a number, by study design: prospective (live) or retrospective."""

    prospective: int = 0
    retrospective: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[OutcomeRecord]) -> DesignCounts:
        counts = Counter(o.study_design for o in outcomes)
        return cls(counts["prospective"], counts["retrospective"])

    @property
    def total(self) -> int:
        return self.prospective + self.retrospective

    def __str__(self) -> str:
        return f"prospective {self.prospective}, retrospective {self.retrospective}"


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` with its two-sided 95 % Wilson interval (None without cases)."""

    successes: int
    n: int
    lower: float | None
    upper: float | None

    @classmethod
    def of(cls, successes: int, n: int) -> Proportion:
        if n == 0:
            return cls(0, 0, None, None)
        lower, upper = wilson_interval(successes, n)
        return cls(successes, n, lower, upper)

    @property
    def estimate(self) -> float | None:
        return self.successes / self.n if self.n else None


def success_of(metric: str, outcome: OutcomeRecord) -> bool | None:
    """Whether ``outcome`` counts for ``metric``, and if so whether it is a success."""
    positive_label = outcome.label == "positive"
    positive_call = outcome.decision == "positive"
    if metric == "sensitivity":
        return positive_call if positive_label else None
    if metric == "specificity":
        return (not positive_call) if not positive_label else None
    if metric == "ppv":
        return positive_label if positive_call else None
    if metric == "npv":
        return (not positive_label) if not positive_call else None
    raise ValueError(f"unknown metric {metric!r}")


def proportion(metric: str, outcomes: Iterable[OutcomeRecord]) -> Proportion:
    """Observed ``metric`` (sensitivity, specificity, ppv, npv) over ``outcomes``."""
    judged = [hit for hit in (success_of(metric, o) for o in outcomes) if hit is not None]
    return Proportion.of(sum(judged), len(judged))


def counted_proportion(metric: str, counts: Iterable[SiteCounts]) -> Proportion:
    """Observed ``metric`` over one or more sites' confusion counts, as :func:`proportion`."""
    successes = trials = 0
    for site in counts:
        if metric == "sensitivity":
            hits, misses = site.true_positives, site.false_negatives
        elif metric == "specificity":
            hits, misses = site.true_negatives, site.false_positives
        elif metric == "ppv":
            hits, misses = site.true_positives, site.false_positives
        elif metric == "npv":
            hits, misses = site.true_negatives, site.false_negatives
        else:
            raise ValueError(f"unknown metric {metric!r}")
        successes, trials = successes + hits, trials + hits + misses
    return Proportion.of(successes, trials)


def group_outcomes(
    outcomes: Iterable[OutcomeRecord], key: Callable[[OutcomeRecord], tuple[str, ...]]
) -> dict[tuple[str, ...], list[OutcomeRecord]]:
    groups: dict[tuple[str, ...], list[OutcomeRecord]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome)].append(outcome)
    return dict(sorted(groups.items()))


def version_order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
