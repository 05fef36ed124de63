"""Labelled performance of one stream against its registered claims, as plain state.

A :class:`StreamMonitor` holds one stream's confusion counts and its labelled
detectors: a Bernoulli CUSUM on misses among positives (sensitivity) and on false
positives among negatives (specificity), each designed from the registered claim for a
target in-control ARL, and the anytime-valid claims test of each claim. The stream
agent calls :meth:`StreamMonitor.observe` once per outcome and emits what it returns.
"""

from __future__ import annotations

import functools
from dataclasses import astuple, dataclass, field
from datetime import datetime
from typing import Any, Literal

from detectors import (
    BernoulliCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    DetectorResult,
    KappaEstimate,
    WindowedKSDrift,
    bernoulli_cusum_threshold,
    cohen_kappa_from_table,
    wilson_interval,
)
from postmarket.contracts.events import (
    Claim,
    JoinPosition,
    Outcome,
    Prediction,
    RegistryEntry,
)

STATE_VERSION = 2
"""2: detector settings left out (designed again on load); version 1 states still load."""
Metric = Literal["sensitivity", "specificity", "score_distribution"]
ClaimedMetric = Literal["sensitivity", "specificity"]
STRATUM_DIMENSIONS = ("slice_thickness_band", "manufacturer", "model")
MAX_STRATA = 48
"""Strata kept per stream; further ones share the stratum ``other`` (bounded state)."""
MIN_READ_PAIRS = 20
"""Read pairs before a stream's reader agreement is shown (its interval is wide below)."""
SCORE_EDGES = tuple(i / 10 for i in range(1, 10))
"""Deciles of the score scale: the fixed bins of the score-drift reference."""


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
    score_reference_cases: int = 500
    """The stream's first predictions form its score reference (label-free drift)."""
    score_window: int = 250
    """Predictions per tumbling window of the score-drift test."""


@dataclass(frozen=True)
class Signal:
    """A detector that fired on this outcome, with what it concluded."""

    detector: str
    metric: Metric
    result: DetectorResult
    claimed: float | None


def claimed_performance(entry: RegistryEntry | None, task: str) -> dict[ClaimedMetric, float]:
    """The registered sensitivity and specificity claims of one task of a version."""
    if entry is None or entry.registration_status != "registered":
        return {}
    claims: list[Claim] = [c for c in entry.claims if c.task == task]
    return {c.metric: c.value for c in claims if c.metric in ("sensitivity", "specificity")}


CELLS = ("tp", "fn", "tn", "fp")


def confusion_cell(outcome: Outcome) -> int:
    """Index into :data:`CELLS` of an outcome's decision against its truth."""
    if outcome.label == "positive":
        return 0 if outcome.decision == "positive" else 1
    return 2 if outcome.decision == "negative" else 3


@functools.lru_cache(maxsize=1024)
def _cusum_threshold(p0: float, p1: float, arl0: float) -> float:
    """Threshold search by exact ARL takes ~0.1 s; every stream of a version shares it."""
    return bernoulli_cusum_threshold(p0, p1, arl0)


def design_detectors(
    claims: dict[ClaimedMetric, float], policy: MonitorPolicy
) -> dict[str, Detector]:
    """The labelled detectors of a stream, one CUSUM and one claims test per claim."""
    detectors: dict[str, Detector] = {}
    drops = {"sensitivity": policy.sensitivity_drop, "specificity": policy.specificity_drop}
    for metric, claimed in sorted(claims.items()):
        detect = max(claimed - drops[metric], 0.01)
        p0, p1 = 1.0 - claimed, 1.0 - detect
        threshold = _cusum_threshold(p0, p1, policy.arl0_cases)
        detectors[f"{metric}_cusum"] = BernoulliCUSUM(p0, p1, threshold)
        detectors[f"{metric}_claims_test"] = BetaBinomialConfidenceSequence(
            1.0 - claimed, policy.claims_alpha
        )
    return detectors


@dataclass
class StreamMonitor:
    """Confusion counts and labelled detectors of one (device, version, site, task)."""

    policy: MonitorPolicy = field(default_factory=MonitorPolicy)
    claims: dict[ClaimedMetric, float] = field(default_factory=dict)
    detectors: dict[str, Detector] = field(default_factory=dict)
    predictions: int = 0
    strata: dict[str, list[int]] = field(default_factory=dict)
    """``dimension=stratum`` -> [tp, fn, tn, fp]: compatibility per acquisition stratum."""
    score_reference: list[int] = field(default_factory=lambda: [0] * (len(SCORE_EDGES) + 1))
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
    reader_pairs: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Blinded read pairs (first, second): [pos/pos, pos/neg, neg/pos, neg/neg]."""

    @classmethod
    def for_claims(cls, claims: dict[ClaimedMetric, float], policy: MonitorPolicy) -> StreamMonitor:
        return cls(policy=policy, claims=dict(claims), detectors=design_detectors(claims, policy))

    def adopt_claims(self, claims: dict[ClaimedMetric, float]) -> None:
        """Start the labelled detectors once the stream's version has registered claims."""
        if claims and not self.claims:
            self.claims = dict(claims)
            self.detectors.update(design_detectors(claims, self.policy))

    @property
    def followup_completeness(self) -> float | None:
        """Share of the stream's predictions that have final truth (verification bias)."""
        return self.outcomes / self.predictions if self.predictions else None

    def already_applied(self, kind: str, join: JoinPosition) -> bool:
        """Whether this emission (or a later one of the same join partition) was applied."""
        last = self.applied.get(f"{kind}|{join.topic}:{join.partition}")
        return last is not None and (join.offset, join.rank) <= last

    def _mark_applied(self, kind: str, join: JoinPosition) -> None:
        self.applied[f"{kind}|{join.topic}:{join.partition}"] = (join.offset, join.rank)

    def observe_prediction(self, prediction: Prediction, joined_at: JoinPosition) -> list[Signal]:
        """Count a new prediction; build the score reference, then test each window against it."""
        return self.observe_score(prediction.score, joined_at)

    def observe_score(self, score: float, joined_at: JoinPosition) -> list[Signal]:
        """:meth:`observe_prediction` from what the join routes of a prediction: its score."""
        self._mark_applied("prediction", joined_at)
        self.predictions += 1
        drift = self.detectors.get("score_drift")
        if drift is None:
            self._add_to_score_reference(score)
            return []
        result = drift.update(score)
        self.statistics["score_drift"] = (result.statistic, result.threshold)
        return [Signal("score_drift", "score_distribution", result, None)] if result.fired else []

    def _add_to_score_reference(self, score: float) -> None:
        bin_index = sum(1 for edge in SCORE_EDGES if score >= edge)
        self.score_reference[bin_index] += 1
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            self.detectors["score_drift"] = self._score_drift()

    @property
    def outcomes(self) -> int:
        return (
            self.true_positives + self.false_negatives + self.true_negatives + self.false_positives
        )

    def observe(self, outcome: Outcome) -> list[Signal]:
        """Count one new outcome and feed the detectors that chart its kind of case."""
        self._mark_applied("outcome", outcome.joined_at)
        self._count(outcome)
        if outcome.blinded_reads is not None:
            first, second = outcome.blinded_reads
            self.reader_pairs[2 * (first == "negative") + (second == "negative")] += 1
        if outcome.label == "positive":
            metric: ClaimedMetric = "sensitivity"
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
        cell = confusion_cell(outcome)
        if cell == 0:
            self.true_positives += 1
        elif cell == 1:
            self.false_negatives += 1
        elif cell == 2:
            self.true_negatives += 1
        else:
            self.false_positives += 1
        acquisition = outcome.acquisition
        for dimension in STRATUM_DIMENSIONS:
            stratum = getattr(acquisition, dimension) or "unknown"
            key = f"{dimension}={stratum}"
            if key not in self.strata and len(self.strata) >= MAX_STRATA:
                key = f"{dimension}=other"
            self.strata.setdefault(key, [0, 0, 0, 0])[cell] += 1
        time = outcome.prediction_time
        self.first_case_time = min(self.first_case_time or time, time)
        self.last_case_time = max(self.last_case_time or time, time)

    def estimate(
        self, metric: ClaimedMetric, alpha: float = 0.05
    ) -> tuple[float, float, float] | None:
        """Observed value of ``metric`` with its Wilson interval, or None before any case."""
        if metric == "sensitivity":
            hits, n = self.true_positives, self.true_positives + self.false_negatives
        else:
            hits, n = self.true_negatives, self.true_negatives + self.false_positives
        if n == 0:
            return None
        lower, upper = wilson_interval(hits, n, alpha)
        return hits / n, lower, upper

    def reader_agreement(self, alpha: float = 0.05) -> KappaEstimate | None:
        """Cohen's kappa of the blinded read pairs, or None while it is undefined."""
        if sum(self.reader_pairs) < MIN_READ_PAIRS:
            return None
        pos_pos, pos_neg, neg_pos, neg_neg = self.reader_pairs
        try:
            return cohen_kappa_from_table([[pos_pos, pos_neg], [neg_pos, neg_neg]], alpha=alpha)
        except ValueError:  # every read the same label: chance agreement is 1
            return None

    def to_state(self) -> dict[str, Any]:
        """JSON-able state for a changelogged table, written on every event, so kept small.

        Detector settings are not stored: they follow from the claims, the policy and the
        score reference (:meth:`_designed_detectors`); only their running states are.
        """
        return {
            "state_version": STATE_VERSION,
            "policy": list(astuple(self.policy)),
            "claims": dict(self.claims),
            "predictions": self.predictions,
            "strata": {k: list(v) for k, v in self.strata.items()},
            "score_reference": list(self.score_reference),
            "detectors": {name: d.to_state()["state"] for name, d in self.detectors.items()},
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
            "reader_pairs": list(self.reader_pairs),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamMonitor:
        version = state.get("state_version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"stream state version {version!r} unknown")
        tp, fn, tn, fp = state["counts"]
        stored_policy = state["policy"]
        policy = (
            MonitorPolicy(**stored_policy)
            if isinstance(stored_policy, dict)
            else MonitorPolicy(*stored_policy)
        )
        monitor = cls(
            policy=policy,
            claims=dict(state["claims"]),
            predictions=state["predictions"],
            strata={k: list(v) for k, v in state["strata"].items()},
            score_reference=list(state["score_reference"]),
            true_positives=tp,
            false_negatives=fn,
            true_negatives=tn,
            false_positives=fp,
            first_case_time=_parse(state["first_case_time"]),
            last_case_time=_parse(state["last_case_time"]),
            applied={k: (v[0], v[1]) for k, v in state["applied"].items()},
            statistics={k: (v[0], v[1]) for k, v in state["statistics"].items()},
            # Added within state version 1: states written before it have no read pairs.
            reader_pairs=list(state.get("reader_pairs", [0, 0, 0, 0])),
        )
        if version == 1:  # whole detector states, settings included
            monitor.detectors = {n: Detector.from_state(s) for n, s in state["detectors"].items()}
            return monitor
        designed = monitor._designed_detectors()
        for name, running in state["detectors"].items():
            if name not in designed:
                raise ValueError(f"stream state has a detector {name!r} its design lacks")
            monitor.detectors[name] = Detector.from_state(
                {**designed[name].to_state(), "state": running}
            )
        return monitor

    def _designed_detectors(self) -> dict[str, Detector]:
        """Fresh detectors with the settings this monitor's detectors were built with."""
        detectors = design_detectors(self.claims, self.policy)
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            detectors["score_drift"] = self._score_drift()
        return detectors

    def _score_drift(self) -> WindowedKSDrift:
        return WindowedKSDrift(
            list(SCORE_EDGES),
            self.score_reference,
            self.policy.score_window,
            self.policy.arl0_cases,
        )


def _iso(time: datetime | None) -> str | None:
    return time.isoformat() if time else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
