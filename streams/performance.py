"""Labelled performance of one stream against its registered claims, as plain state.

A :class:`StreamMonitor` holds one stream's confusion counts and its labelled
detectors: a Bernoulli CUSUM on misses among positives (sensitivity) and on false
positives among negatives (specificity), each designed from the registered claim for a
target in-control ARL, and the anytime-valid claims test of each claim. The stream
agent calls :meth:`StreamMonitor.observe` once per outcome and emits what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from detectors import (
    BernoulliCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    DetectorResult,
    wilson_interval,
)
from postmarket.contracts.events import Claim, Outcome, RegistryEntry

STATE_VERSION = 1
Metric = Literal["sensitivity", "specificity"]


@dataclass(frozen=True)
class MonitorPolicy:
    """How hard to look: chart design and the claims test's error rate."""

    arl0_cases: float = 5000.0
    """In-control average run length of each CUSUM, in the cases it charts."""
    sensitivity_drop: float = 0.07
    """The drop below the claimed sensitivity each CUSUM is designed to catch fastest."""
    specificity_drop: float = 0.05
    claims_alpha: float = 0.05
    """Chance, under the claim, that the claims test ever says "below claim"."""


@dataclass(frozen=True)
class Signal:
    """A detector that fired on this outcome, with what it concluded."""

    detector: str
    metric: Metric
    result: DetectorResult
    claimed: float


def claimed_performance(entry: RegistryEntry | None, task: str) -> dict[Metric, float]:
    """The registered sensitivity and specificity claims of one task of a version."""
    if entry is None or entry.registration_status != "registered":
        return {}
    claims: list[Claim] = [c for c in entry.claims if c.task == task]
    return {c.metric: c.value for c in claims if c.metric in ("sensitivity", "specificity")}


def design_detectors(claims: dict[Metric, float], policy: MonitorPolicy) -> dict[str, Detector]:
    """The labelled detectors of a stream, one CUSUM and one claims test per claim."""
    detectors: dict[str, Detector] = {}
    drops = {"sensitivity": policy.sensitivity_drop, "specificity": policy.specificity_drop}
    for metric, claimed in sorted(claims.items()):
        detect = max(claimed - drops[metric], 0.01)
        detectors[f"{metric}_cusum"] = BernoulliCUSUM.for_arl0(
            1.0 - claimed, 1.0 - detect, policy.arl0_cases
        )
        detectors[f"{metric}_claims_test"] = BetaBinomialConfidenceSequence(
            1.0 - claimed, policy.claims_alpha
        )
    return detectors


@dataclass
class StreamMonitor:
    """Confusion counts and labelled detectors of one (device, version, site, task)."""

    claims: dict[Metric, float] = field(default_factory=dict)
    detectors: dict[str, Detector] = field(default_factory=dict)
    true_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    false_positives: int = 0
    first_case_time: datetime | None = None
    last_case_time: datetime | None = None
    applied: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per join input partition, the last (offset, rank) applied: replays are skipped."""
    statistics: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Each detector's latest (statistic, threshold), for metrics."""

    @classmethod
    def for_claims(cls, claims: dict[Metric, float], policy: MonitorPolicy) -> StreamMonitor:
        return cls(claims=dict(claims), detectors=design_detectors(claims, policy))

    def adopt_claims(self, claims: dict[Metric, float], policy: MonitorPolicy) -> None:
        """Start the labelled detectors once the stream's version has registered claims."""
        if claims and not self.detectors:
            self.claims = dict(claims)
            self.detectors = design_detectors(claims, policy)

    @property
    def outcomes(self) -> int:
        return (
            self.true_positives + self.false_negatives + self.true_negatives + self.false_positives
        )

    def already_applied(self, outcome: Outcome) -> bool:
        """Whether this outcome (or a later one from the same join partition) was applied."""
        join = outcome.joined_at
        last = self.applied.get(f"{join.topic}:{join.partition}")
        return last is not None and (join.offset, join.rank) <= last

    def observe(self, outcome: Outcome) -> list[Signal]:
        """Count one new outcome and feed the detectors that chart its kind of case."""
        join = outcome.joined_at
        self.applied[f"{join.topic}:{join.partition}"] = (join.offset, join.rank)
        self._count(outcome)
        if outcome.label == "positive":
            metric: Metric = "sensitivity"
            adverse = outcome.decision == "negative"
        else:
            metric = "specificity"
            adverse = outcome.decision == "positive"
        signals = []
        for name in (f"{metric}_cusum", f"{metric}_claims_test"):
            detector = self.detectors.get(name)
            if detector is None:
                continue
            result = detector.update(1.0 if adverse else 0.0)
            self.statistics[name] = (result.statistic, result.threshold)
            if result.fired:
                signals.append(Signal(name, metric, result, self.claims[metric]))
        return signals

    def _count(self, outcome: Outcome) -> None:
        if outcome.label == "positive":
            if outcome.decision == "positive":
                self.true_positives += 1
            else:
                self.false_negatives += 1
        elif outcome.decision == "negative":
            self.true_negatives += 1
        else:
            self.false_positives += 1
        time = outcome.prediction_time
        self.first_case_time = min(self.first_case_time or time, time)
        self.last_case_time = max(self.last_case_time or time, time)

    def estimate(self, metric: Metric, alpha: float = 0.05) -> tuple[float, float, float] | None:
        """Observed value of ``metric`` with its Wilson interval, or None before any case."""
        if metric == "sensitivity":
            hits, n = self.true_positives, self.true_positives + self.false_negatives
        else:
            hits, n = self.true_negatives, self.true_negatives + self.false_positives
        if n == 0:
            return None
        lower, upper = wilson_interval(hits, n, alpha)
        return hits / n, lower, upper

    def to_state(self) -> dict[str, Any]:
        """JSON-able state for a changelogged table."""
        return {
            "state_version": STATE_VERSION,
            "claims": dict(self.claims),
            "detectors": {name: d.to_state() for name, d in self.detectors.items()},
            "counts": [
                self.true_positives,
                self.false_negatives,
                self.true_negatives,
                self.false_positives,
            ],
            "first_case_time": _iso(self.first_case_time),
            "last_case_time": _iso(self.last_case_time),
            "applied": {k: list(v) for k, v in self.applied.items()},
            "statistics": {k: list(v) for k, v in self.statistics.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamMonitor:
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('state_version')!r} unknown")
        tp, fn, tn, fp = state["counts"]
        return cls(
            claims=dict(state["claims"]),
            detectors={n: Detector.from_state(s) for n, s in state["detectors"].items()},
            true_positives=tp,
            false_negatives=fn,
            true_negatives=tn,
            false_positives=fp,
            first_case_time=_parse(state["first_case_time"]),
            last_case_time=_parse(state["last_case_time"]),
            applied={k: (v[0], v[1]) for k, v in state["applied"].items()},
            statistics={k: (v[0], v[1]) for k, v in state["statistics"].items()},
        )


def _iso(time: datetime | None) -> str | None:
    return time.isoformat() if time else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
