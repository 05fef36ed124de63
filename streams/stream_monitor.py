"""Performance of one stream against its registered claims and its own reference, as state.

A :class:`StreamMonitor` holds one stream's confusion counts and its detectors (its state and
how it is stored: :mod:`streams.stream_state`).

Labelled, on each outcome: a multi-chart (GLR) Bernoulli CUSUM on misses among positives
(sensitivity) and on false positives among negatives (specificity), each a few CUSUMs tuned
to drops of different sizes below the claim's acceptable level, every one designed by exact
ARL so that together they keep the chart's in-control ARL (a Bonferroni bound,
:mod:`detectors.bernoulli_multi_cusum`); the anytime-valid claims test of each claim; and a windowed
calibration-in-the-large test of the scores against the truth (which is also the check of
the label-free estimate's own assumption).

Label-free, on each prediction, so they can warn weeks before any label exists: the
confidence-based estimate of each claimed metric from the calibrated scores; and, once
the stream's first predictions have formed its reference, score drift and the drift of
each acquisition category mix (manufacturer, model, slice-thickness and kVp band), where a
category the reference never saw (a new scanner model) is a finding. Once a drift is
investigated and the change accepted, a re-baselining decision restarts the reference from
the predictions that follow (:meth:`StreamMonitor.rebaseline`); nothing re-baselines a claim,
but a decision on a stream whose claims test rejected restarts that test, as a new test paid
for by the budget, with the CUSUMs that alarmed (:meth:`StreamMonitor.restart_after_review`):
a re-baselining, or a review decision published when a claim-based alert of the stream is
resolved, which restarts only those.
A CUSUM's signal says when the change began (:attr:`Signal.change_began_at`).

The join (through streams.live_streams) calls :meth:`StreamMonitor.observe` once per outcome,
:meth:`StreamMonitor.observe_score` once per prediction and :meth:`StreamMonitor.rebaseline`
once per decision, and emits what the first two return.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from detectors import (
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    DetectorResult,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    WindowedPerformanceEstimate,
)
from detectors.base import TumblingWindow, check_probability
from detectors.statistics import (
    EstimatedPerformance,
    KappaEstimate,
    cohen_kappa_from_table,
    wilson_interval,
)
from postmarket.contracts.events import JoinPosition, Outcome, Prediction, RebaselineScope
from streams.acquisition import (
    ACQUISITION_DIMENSIONS,
    AcquisitionCategories,
    AcquisitionDimension,
    acquisition_categories,
)
from streams.change_start import firing_run_start, runs_started
from streams.detector_design import (
    MAX_REFERENCE_CATEGORIES,
    OTHER_CATEGORY,
    REFERENCE_DRIFT_DETECTORS,
    SCORE_EDGES,
    UNKNOWN_CATEGORY,
    bounded_reference,
)
from streams.monitor_policy import (
    SURVEILLANCE_YEAR,
    TESTS_PER_STREAM,
    ClaimedMetric,
    MonitorPolicy,
)
from streams.routing import RoutedScore
from streams.stream_state import StreamMonitorState

Metric = Literal["sensitivity", "specificity", "score_distribution", "acquisition", "calibration"]
STRATUM_DIMENSIONS = ("slice_thickness_band", "manufacturer", "model")
MAX_STRATA = 48
"""Strata kept per stream; further ones share the stratum ``other`` (bounded state)."""
MIN_READ_PAIRS = 20
"""Read pairs before a stream's reader agreement is shown (its interval is wide below)."""
UNMONITORED_STREAM = "unmonitored_stream"
"""The signal of a stream with a claimed metric that no chart can monitor."""


@dataclass(frozen=True)
class Signal:
    """A detector that fired on this outcome, with what it concluded."""

    detector: str
    metric: Metric
    result: DetectorResult
    claimed: float | None
    reason: str | None = None
    """Why, for a signal no statistic decides (an unmonitored stream)."""
    change_began_at: datetime | None = None
    """For a labelled CUSUM's signal, the event (prediction) time of the case at which the
    change is estimated to have begun: the case after the CUSUM that fired last sat at zero,
    Page's maximum-likelihood estimate (``result.change_began`` counts it in charted cases).
    None for other tests, and when that case predates what the stream's state kept (a state
    written before this estimate was kept, or migrated from a single CUSUM)."""


CELLS = ("tp", "fn", "tn", "fp")


def confusion_cell(outcome: Outcome) -> int:
    """Index into :data:`CELLS` of an outcome's decision against its truth."""
    if outcome.label == "positive":
        return 0 if outcome.decision == "positive" else 1
    return 2 if outcome.decision == "negative" else 3


@dataclass
class StreamMonitor(StreamMonitorState):
    """What one (device, version, site, task) does with each outcome, prediction and decision."""

    @classmethod
    def for_claims(
        cls,
        claims: dict[ClaimedMetric, float],
        policy: MonitorPolicy,
        reference_prevalence: float | None = None,
        lower_bounds: dict[ClaimedMetric, float] | None = None,
    ) -> StreamMonitor:
        monitor = cls(
            policy=policy,
            claims=dict(claims),
            reference_prevalence=reference_prevalence,
            claim_lower_bounds=dict(lower_bounds or {}),
        )
        monitor.detectors = monitor._design().detectors
        return monitor

    def adopt_claims(
        self,
        claims: dict[ClaimedMetric, float],
        reference_prevalence: float | None = None,
        lower_bounds: dict[ClaimedMetric, float] | None = None,
    ) -> None:
        """Start the labelled detectors once the stream's version has registered claims.

        A stream charted at its point estimates because its state predates the claims'
        lower bounds restarts its claim-based detectors at the acceptable levels once the
        registration gives those bounds (its counts and references are kept)."""
        if claims and not self.claims:
            self.claims = dict(claims)
            self.reference_prevalence = reference_prevalence
            self.claim_lower_bounds = dict(lower_bounds or {})
            for name, detector in self._design().detectors.items():
                self.detectors.setdefault(name, detector)  # keeps the running calibration test
        elif lower_bounds and not self.claim_lower_bounds and claims == self.claims:
            self.claim_lower_bounds = dict(lower_bounds)
            for name, detector in self._design().detectors.items():
                if name != "calibration_test" and name in self.detectors:
                    self.detectors[name] = detector
                    self.statistics.pop(name, None)
                    self.change_starts.pop(name, None)

    def expected_false_alarms_per_year(self) -> float | None:
        """At most what this stream's tests are designed to raise a year in control at the
        plan's volume: a part of the fleet budget per test it runs (the acquisition-drift
        tests share one part). None without a budget."""
        budget = self.policy.budget()
        if budget is None:
            return None
        acquisition = [n for n in self.detectors if n.endswith("_drift") and n != "score_drift"]
        tests = len(self.detectors) - len(acquisition) + bool(acquisition)
        return tests * budget.share_per_test(TESTS_PER_STREAM)

    def unmonitored_signals(self) -> list[Signal]:
        """The stream's one ``unmonitored_stream`` signal, on its first event after a design
        left a claimed metric without a chart: never silently unmonitored."""
        if not self.unmonitored or self.unmonitored_raised:
            return []
        self.unmonitored_raised = True
        metrics = sorted(self.unmonitored)
        result = DetectorResult(
            fired=True, statistic=0.0, threshold=0.0, n_cases=0, n_events=0, run_length=0
        )
        reason = "; ".join(self.unmonitored[metric] for metric in metrics)
        return [Signal(UNMONITORED_STREAM, metrics[0], result, self.claims.get(metrics[0]), reason)]

    @property
    def followup_completeness(self) -> float | None:
        """Share of the stream's predictions that have final truth (verification bias)."""
        return self.outcomes / self.predictions if self.predictions else None

    def already_applied(self, kind: str, join: JoinPosition) -> bool:
        """Whether this emission (or a later one of the same join partition) was applied."""
        last = self.applied.get(f"{kind}|{join.topic}:{join.partition}")
        return last is not None and join.order() <= last

    def _mark_applied(self, kind: str, join: JoinPosition) -> None:
        self.applied[f"{kind}|{join.topic}:{join.partition}"] = join.order()

    def observe_prediction(self, prediction: Prediction, joined_at: JoinPosition) -> list[Signal]:
        """Count a new prediction; build the references, then test each window against them."""
        categories = acquisition_categories(prediction.acquisition)
        return self.observe_score(prediction.score, joined_at, prediction.decision, categories)

    def observe_score(
        self,
        score: float,
        joined_at: JoinPosition,
        decision: str | None = None,
        categories: AcquisitionCategories | None = None,
    ) -> list[Signal]:
        """:meth:`observe_prediction` from what the join routes of a prediction. A record of
        the previous release has no decision nor categories: the tests needing them skip it.

        All or nothing (:meth:`_check_case`): a score refused raises before anything changes
        (a score that is no probability would otherwise fill the reference unseen)."""
        self._check_case(score)
        self._mark_applied("prediction", joined_at)
        self.predictions += 1
        signals = self.unmonitored_signals()
        if decision is not None:
            called = 1.0 if decision == "positive" else 0.0
            for metric in sorted(self.claims):
                signals += self._update(f"{metric}_estimate", metric, score, called)
        drift = self.detectors.get("score_drift")
        if drift is None:
            self._add_to_references(score, categories)
            return signals
        signals += self._update("score_drift", "score_distribution", score)
        if categories is not None:
            signals += self._update_acquisition(categories)
        return signals

    def observe_scores(self, entries: Sequence[RoutedScore]) -> Iterator[list[Signal] | None]:
        """:meth:`observe_score` of each of ``entries`` in turn (the predictions of one input
        record, in its order), yielding as each is applied its signals, None for one applied
        already. The cases before the next one that can complete a window of any of the
        stream's label-free tests are added to them at once (:meth:`_untested_run`): the
        same states and the same signals (none), at a fraction of the calls."""
        at, count = 0, len(entries)
        while at < count:
            entry = entries[at]
            if self.already_applied("prediction", entry.joined_at):
                yield None
                at += 1
                continue
            run = self._untested_run(entries, at)
            if run > 1:
                self._observe_untested(entries[at : at + run])
                for _ in range(run):
                    yield []
                at += run
                continue
            yield self.observe_score(entry.score, entry.joined_at, entry.decision, entry.categories)
            at += 1

    def _untested_run(self, entries: Sequence[RoutedScore], start: int) -> int:
        """How many entries from ``start`` none of the label-free tests would test: before
        the case that completes a window (or the score reference), in order after one
        another on the same input partition (so none was applied already) and decided alike."""
        if self.unmonitored and not self.unmonitored_raised:
            return 0
        room = self._room_before_test()
        first = entries[start]
        topic, partition, decided = first.joined_at.topic, first.joined_at.partition, first.decision
        last, run = first.joined_at.order(), 1
        for entry in entries[start + 1 : start + room]:
            at = entry.joined_at
            if at.topic != topic or at.partition != partition:
                break
            order = at.order()
            if (entry.decision is None) != (decided is None) or order <= last:
                break
            last, run = order, run + 1
        return run

    def _room_before_test(self) -> int:
        """Predictions the label-free tests take before one can complete a window (0 if a
        test of a kind not known to take them untested charts them)."""
        rooms = []
        if "score_drift" not in self.detectors:
            rooms.append(self.policy.score_reference_cases - sum(self.score_reference) - 1)
        for name, test in self.detectors.items():
            kind = label_free_kind(name)
            if kind is None:
                continue  # charts outcomes
            if not isinstance(test, kind):
                return 0
            rooms.append(test.cases_before_test())
        return min(rooms, default=0)

    def _observe_untested(self, entries: Sequence[RoutedScore]) -> None:
        """:meth:`observe_score` of each entry, none completing a window (see
        :meth:`_untested_run`): the detectors take them at once."""
        for entry in entries:
            check_probability("score", entry.score, open_interval=False)
        self._mark_applied("prediction", entries[-1].joined_at)
        self.predictions += len(entries)
        scores = [entry.score for entry in entries]
        if entries[0].decision is not None:
            calls = [1.0 if entry.decision == "positive" else 0.0 for entry in entries]
            for metric in sorted(self.claims):
                estimate = self.detectors.get(f"{metric}_estimate")
                if isinstance(estimate, WindowedPerformanceEstimate):
                    self._untested(f"{metric}_estimate", estimate.add_untested(scores, calls))
        drift = self.detectors.get("score_drift")
        if drift is None:
            for entry in entries:
                self._add_to_references(entry.score, entry.categories)
            return
        if isinstance(drift, WindowedKSDrift):  # always: _room_before_test checked it
            self._untested("score_drift", drift.add_untested(scores))
        for dimension in ACQUISITION_DIMENSIONS:
            chi_square = self.detectors.get(f"{dimension}_drift")
            if isinstance(chi_square, WindowedChiSquareDrift):
                codes = [self._code(chi_square, entry.categories, dimension) for entry in entries]
                self._untested(f"{dimension}_drift", chi_square.add_untested(codes))

    def _untested(self, name: str, result: DetectorResult) -> None:
        self.statistics[name] = (result.statistic, result.threshold)

    def rebaseline(
        self, decision: uuid.UUID, at: JoinPosition, scope: RebaselineScope = "reference"
    ) -> bool:
        """Apply a decision on the stream. Scope ``reference``: restart the reference-drift
        tests (the next ``score_reference_cases`` predictions form a new reference) and, when
        a claims test has rejected, the stream's restart after review
        (:meth:`restart_after_review`). Scope ``review`` (a claim-based alert was reviewed
        and resolved): only that restart, the references untouched; with no claims test
        rejected it changes nothing but is remembered. Counts and strata are untouched.

        False, changing nothing, for a decision applied already: the record at ``at`` read
        again, or the same decision published again (a new offset, the same id). A decision
        that restarts a claims test changes the labelled state as well as the label-free one
        (:attr:`claims_restarts` says whether it did): the caller writes both.
        """
        if self.already_applied("prediction", at) or str(decision) == self.rebaseline_id:
            return False
        self._mark_applied("prediction", at)
        self.rebaseline_id = str(decision)
        if scope == "reference":
            self.score_reference = [0] * len(self.score_reference)
            self.acquisition_reference = {}
            for name in REFERENCE_DRIFT_DETECTORS:
                self.detectors.pop(name, None)
                self.statistics.pop(name, None)
        self.restart_after_review()
        return True

    def restart_after_review(self) -> list[str]:
        """Restart what a reviewed rejection left stuck; the detectors restarted, by name.

        A claims test that rejected stays rejected (it fires once) until its surveillance
        year ends. Once a decision on the stream shows it was reviewed, every claims test
        that rejected starts again from the next case, a new test with the same alpha, and
        every CUSUM that alarmed since the claims tests last started restarts from zero, so
        the cases before the review (the problem already reported) do not carry into the
        charts of what follows. The alpha of a claims test is set so that these restarts
        stay inside the budget: a restart follows a rejection, and under the acceptable level
        each new test rejects with probability at most alpha whatever came before it (its
        cases are new), so a stream's claims test rejects falsely at most ``alpha + alpha^2
        + ... = alpha / (1 - alpha)`` times a surveillance year in expectation, which
        :meth:`FleetBudget.alpha` makes the test's share. Restarting a CUSUM never raises
        its false alarms: from zero it alarms no earlier than from where it was.
        """
        rejected = [
            name
            for name, test in sorted(self.detectors.items())
            if isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "below claim"
        ]
        if not rejected:
            return []
        restarted = rejected + sorted(self.alarmed_charts & set(self.detectors))
        for name in restarted:
            self.detectors[name].reset()
            self.statistics.pop(name, None)
            self.change_starts.pop(name, None)
        self.alarmed_charts = set()
        self.claims_restarts += len(rejected)
        return restarted

    def _update(
        self, name: str, metric: Metric, x: float, risk: float | None = None
    ) -> list[Signal]:
        detector = self.detectors.get(name)
        if detector is None:
            return []
        result = detector.update(x, risk)
        self.statistics[name] = (result.statistic, result.threshold)
        if not result.fired:
            return []
        claimed = self.claims.get(metric) if metric in ("sensitivity", "specificity") else None
        return [Signal(name, metric, result, claimed)]

    def _update_chart(
        self, name: str, metric: ClaimedMetric, adverse: bool, time: datetime
    ) -> list[Signal]:
        """:meth:`_update` of a labelled chart, following each of its CUSUMs' run start so
        that a signal says when the change began (see :attr:`Signal.change_began_at`)."""
        chart = self.detectors.get(name)
        if not isinstance(chart, BernoulliMultiCUSUM):
            return self._update(name, metric, 1.0 if adverse else 0.0)
        before = chart.run_lengths
        starts = self.change_starts.pop(name, [None] * len(before))
        signals = self._update(name, metric, 1.0 if adverse else 0.0)
        if signals:  # the chart restarted: every run is over
            self.alarmed_charts.add(name)
            run = signals[0].result.run_length
            began = firing_run_start(run, before, starts, 1, time)
            return [replace(signals[0], change_began_at=began)]
        running = runs_started(before, chart.run_lengths, starts, time)
        if any(running):
            self.change_starts[name] = running
        return signals

    def _update_acquisition(self, categories: AcquisitionCategories) -> list[Signal]:
        signals = []
        for dimension in ACQUISITION_DIMENSIONS:
            drift = self.detectors.get(f"{dimension}_drift")
            if not isinstance(drift, WindowedChiSquareDrift):
                continue
            code = self._code(drift, categories, dimension)
            signals += self._update(f"{dimension}_drift", "acquisition", code)
        return signals

    @staticmethod
    def _code(
        drift: WindowedChiSquareDrift,
        categories: AcquisitionCategories,
        dimension: AcquisitionDimension,
    ) -> int:
        """The drift test's code of the case's category in ``dimension``."""
        category = categories.get(dimension, UNKNOWN_CATEGORY)
        if category not in drift.categories and OTHER_CATEGORY in drift.categories:
            category = OTHER_CATEGORY  # pooled in the reference: not a new category
        return drift.code(category)

    def _add_to_references(self, score: float, categories: AcquisitionCategories | None) -> None:
        bin_index = sum(1 for edge in SCORE_EDGES if score >= edge)
        self.score_reference[bin_index] += 1
        if categories is not None:
            for dimension in ACQUISITION_DIMENSIONS:
                counts = self.acquisition_reference.setdefault(dimension, {})
                category = categories.get(dimension, UNKNOWN_CATEGORY)
                if category not in counts and len(counts) >= 2 * MAX_REFERENCE_CATEGORIES:
                    category = OTHER_CATEGORY  # bounded state while the reference fills
                counts[category] = counts.get(category, 0) + 1
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            self.acquisition_reference = {
                dimension: bounded_reference(counts)
                for dimension, counts in self.acquisition_reference.items()
            }
            self.detectors.update(self._reference_detectors())

    @property
    def outcomes(self) -> int:
        return (
            self.true_positives + self.false_negatives + self.true_negatives + self.false_positives
        )

    def observe(self, outcome: Outcome) -> list[Signal]:
        """Count one new outcome and feed the detectors that chart its kind of case.

        All or nothing (:meth:`_check_case`): an outcome refused raises before anything
        changes."""
        self._check_case(outcome.score, outcome.prediction_time)
        self._mark_applied("outcome", outcome.joined_at)
        self._count(outcome)
        self._follow_surveillance_year(outcome.prediction_time)
        if outcome.blinded_reads is not None:
            first, second = outcome.blinded_reads
            self.reader_pairs[2 * (first == "negative") + (second == "negative")] += 1
        positive = outcome.label == "positive"
        if positive:
            metric: ClaimedMetric = "sensitivity"
            adverse = outcome.decision == "negative"
        else:
            metric = "specificity"
            adverse = outcome.decision == "positive"
        signals = self.unmonitored_signals()
        signals += self._update_chart(f"{metric}_cusum", metric, adverse, outcome.prediction_time)
        signals += self._update(f"{metric}_claims_test", metric, 1.0 if adverse else 0.0)
        return signals + self._update(
            "calibration_test", "calibration", float(positive), outcome.score
        )

    def _check_case(self, score: float, time: datetime | None = None) -> None:
        """Refuse, before anything changes, a case any count or detector would refuse midway.

        What the detectors are fed otherwise cannot fail their validation: a CUSUM and a
        claims test get 0 or 1, the estimates 0.0 or 1.0 as the decision, a drift test a code
        from its own :meth:`~detectors.WindowedChiSquareDrift.code`; past it they only add
        (:mod:`detectors.base`: invalid input raises and leaves a detector untouched). So
        only the case's score (a probability, for the calibration test, the estimates and
        the score reference) and its time (compared with the stream's own times, naive with
        aware raising) are checked, and an update either applies whole or raises here."""
        check_probability("score", score, open_interval=False)
        known = self.first_case_time or self.claims_year_start
        if time is not None and known is not None:
            if (time.utcoffset() is None) != (known.utcoffset() is None):
                raise ValueError(
                    f"case time {time.isoformat()} cannot be compared with the stream's "
                    f"({known.isoformat()}): only one of them has a time zone"
                )

    def _follow_surveillance_year(self, time: datetime) -> None:
        """Restart the claims tests at each new surveillance year of the stream (case time).

        A claims test rejects at most once with probability at most alpha; restarted yearly,
        it spends alpha once a year, as the fleet budget counts it, and a rejection (the
        stream's critical alert) stands for the rest of its year. A late outcome of an earlier
        year counts in the current one."""
        if self.claims_year_start is None:
            self.claims_year_start = time
            return
        years = (time - self.claims_year_start) // SURVEILLANCE_YEAR
        if years < 1:
            return
        self.claims_year_start += years * SURVEILLANCE_YEAR
        self.alarmed_charts = set()
        for metric in self.levels:
            test = self.detectors.get(f"{metric}_claims_test")
            if test is not None:
                test.reset()
                self.statistics.pop(f"{metric}_claims_test", None)

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

    def estimated_performance(self) -> EstimatedPerformance | None:
        """The label-free estimate over the last full window, from the first claim's test."""
        for metric in sorted(self.claims):
            estimate = self.detectors.get(f"{metric}_estimate")
            if isinstance(estimate, WindowedPerformanceEstimate):
                return estimate.last_window()
        return None


def label_free_kind(name: str) -> type[TumblingWindow] | None:
    """The tumbling-window class a stream's label-free test called ``name`` takes untested
    predictions as (see :meth:`StreamMonitor._room_before_test`); None for a test that
    charts outcomes."""
    if name.endswith("_estimate"):
        return WindowedPerformanceEstimate
    if name == "score_drift":
        return WindowedKSDrift
    if name.endswith("_drift"):
        return WindowedChiSquareDrift
    return None
