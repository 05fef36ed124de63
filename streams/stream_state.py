"""What one stream's monitor holds, and how it is kept in its two changelogged tables.

:class:`StreamMonitorState` is the stream's state: its claims and policy, confusion counts,
references, detectors and the join positions it applied. It is written as two JSON states
(:meth:`~StreamMonitorState.to_states`), the labelled one that outcomes change and the
label-free one that predictions change, and read back from them by any release that knows
their version (:meth:`~StreamMonitorState.from_states`), migrating older layouts: a single
CUSUM into a multi-chart one (:func:`migrate_single_cusum`), a policy from before the fleet
budget into the plan's budget (:func:`budgeted_policy`). Detector settings are not stored:
they are designed again from the claims, the policy and the references
(:mod:`streams.detector_design`). What a stream does with a case is
:class:`streams.stream_monitor.StreamMonitor`, this state's one subclass.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple, Self

from detectors import (
    BernoulliMultiCUSUM,
    Detector,
    StateError,
    WindowedChiSquareDrift,
    WindowedKSDrift,
)
from postmarket.claim_levels import ChartLevels
from streams.detector_design import (
    SCORE_EDGES,
    Design,
    design_detectors,
    design_reference_drift,
    design_score_drift,
    is_label_free,
)
from streams.monitor_policy import ClaimedMetric, MonitorPolicy

WINDOWED_DRIFT = (WindowedKSDrift, WindowedChiSquareDrift)
"""Tests whose state holds the statistic and threshold their last update reported."""

STATE_VERSION = 4
"""2: detector settings left out (designed again on load); 3: the acquisition reference;
4: the sensitivity and specificity charts are multi-chart CUSUMs (one Bernoulli CUSUM
before: its running state is migrated, :func:`migrate_single_cusum`). Version 1-3 states
still load (a stream whose reference predates 3 has no acquisition drift tests). Keys added
within a version are read with a default, so its older states still load, and a release
that predates a key ignores it; a release before 4 refuses a version-4 state. Added within 4:
``change_starts``, ``alarmed_charts`` and ``claims_restarts`` (labelled side, each written
only when not empty; absent, a run's start is unknown and no alarm is pending review)."""


class StreamStates(NamedTuple):
    """A stream's two table states: outcomes' side and predictions' side."""

    labelled: dict[str, Any]
    label_free: dict[str, Any]


def migrate_single_cusum(
    chart: BernoulliMultiCUSUM, running: dict[str, Any], level: ChartLevels
) -> dict[str, Any]:
    """A labelled chart's running state from a stream state of version 3 or older, whose
    chart was one Bernoulli CUSUM at the same acceptable level tuned to the rejectable one.

    Its current run is carried into every CUSUM of the new chart (see
    :meth:`BernoulliMultiCUSUM.running_state_from_cusum`: the evidence of a change under way
    is kept, and the false-alarm guarantee holds). A state already in the new layout (a
    stream this release wrote once, then rolled back and forward) is taken as it is."""
    if "run_lengths" in running:
        return running
    return chart.running_state_from_cusum(running, 1.0 - level.rejectable)


@dataclass
class StreamMonitorState:
    """Confusion counts and detectors of one (device, version, site, task), as stored."""

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
    applied: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Per join input partition, the last (offset, batch index, rank) applied: replays are
    skipped."""
    statistics: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Each detector's latest (statistic, threshold), for metrics."""
    reader_pairs: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Blinded read pairs (first, second): [pos/pos, pos/neg, neg/pos, neg/neg]."""
    acquisition_reference: dict[str, dict[str, int]] = field(default_factory=dict)
    """dimension -> category -> count over the stream's first predictions."""
    reference_prevalence: float | None = None
    """The prevalence the device version's scores are calibrated at, when its registration
    says so; the label-free estimates are then adjusted to each window's prevalence.

    Only the registration can say it. The stream's own data cannot stand in for it: the
    mean score of its reference window is the prevalence at which EM finds no shift, so
    a site that differed from the start would look unshifted (the bias stays); the
    prevalence of its labelled outcomes is the site's, not the one the scores were
    calibrated at, comes months late from a verification-biased subset, and changes as
    labels arrive, while the detectors' settings must follow from stored state.
    Persisted with the claims, set once with them (:meth:`StreamMonitor.adopt_claims`)."""
    rebaseline_id: str | None = None
    """The last re-baselining decision applied: the same one published again is skipped."""
    claim_lower_bounds: dict[ClaimedMetric, float] = field(default_factory=dict)
    """Each claim's lower confidence bound, persisted with the claims: the default acceptable
    level. Empty in a state from before it was kept (charted at the point estimate then)."""
    levels: dict[ClaimedMetric, ChartLevels] = field(default_factory=dict)
    """The levels the labelled charts are designed at (follows from the claims and policy)."""
    unmonitored: dict[ClaimedMetric, str] = field(default_factory=dict)
    """Claimed metrics no chart can monitor, with why (follows from the claims and policy)."""
    unmonitored_raised: bool = False
    """Whether the stream's unmonitored_stream alert was raised (it is raised once)."""
    claims_year_start: datetime | None = None
    """Case time at which the claims tests' current surveillance year began."""
    change_starts: dict[str, list[datetime | None]] = field(default_factory=dict)
    """Per labelled chart whose statistic is above zero, each of its CUSUMs' run start: the
    event time of the case after that CUSUM last sat at zero (None: before the state kept
    it). What a signal's ``change_began_at`` is read from; a chart at zero has no entry."""
    alarmed_charts: set[str] = field(default_factory=set)
    """Labelled charts that alarmed since the claims tests last started (a surveillance
    year, or a restart after review): what :meth:`StreamMonitor.restart_after_review` restarts."""
    claims_restarts: int = 0
    """Claims tests restarted after review over the stream's life (each a new test)."""

    def _design(self) -> Design:
        design = design_detectors(
            self.claims, self.policy, self.reference_prevalence, self.claim_lower_bounds
        )
        self.levels, self.unmonitored = design.levels, design.unmonitored
        return design

    def _designed_detectors(self) -> dict[str, Detector]:
        """Fresh detectors with the settings this monitor's detectors were built with."""
        detectors = self._design().detectors
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            detectors.update(self._reference_detectors())
        return detectors

    def _reference_detectors(self) -> dict[str, Detector]:
        """The label-free drift tests against the stream's completed reference."""
        return design_reference_drift(self.score_reference, self.acquisition_reference, self.policy)

    def _score_drift(self) -> WindowedKSDrift:
        """The score-drift test of the stream's reference (:func:`design_score_drift`)."""
        return design_score_drift(self.score_reference, self.policy)

    def to_states(self) -> StreamStates:
        """JSON-able states for two changelogged tables, each written when its side changes.

        An outcome rewrites only the labelled part, a batch of predictions only the
        label-free part: each stays small, and each carries the join positions it applied,
        so either is replayed idempotently on its own. Detector settings are not stored:
        they follow from the claims, the policy and the references
        (:meth:`_designed_detectors`); only their running states are.
        """
        return StreamStates(self.labelled_state(), self.label_free_state())

    def state_of(self, kind: Literal["outcome", "prediction"]) -> dict[str, Any]:
        """The one state a new outcome or new predictions changed (see :meth:`to_states`)."""
        return self.labelled_state() if kind == "outcome" else self.label_free_state()

    def _common_state(self, label_free: bool) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "policy": list(astuple(self.policy)),
            "claims": dict(self.claims),
            "reference_prevalence": self.reference_prevalence,
            "claim_lower_bounds": dict(self.claim_lower_bounds),
            # Only once raised: most streams never are, and pay nothing for it.
            **({"unmonitored_raised": True} if self.unmonitored_raised else {}),
            "detectors": {
                name: d.to_state()["state"]
                for name, d in self.detectors.items()
                if is_label_free(name) == label_free
            },
            "applied": {
                k: list(v)
                for k, v in self.applied.items()
                if k.startswith("prediction|") == label_free
            },
            "statistics": {
                k: list(v)
                for k, v in self.statistics.items()
                if is_label_free(k) == label_free
                and not isinstance(self.detectors.get(k), WINDOWED_DRIFT)
            },
        }

    def labelled_state(self) -> dict[str, Any]:
        return self._common_state(label_free=False) | {
            "strata": {k: list(v) for k, v in self.strata.items()},
            "counts": [
                self.true_positives,
                self.false_negatives,
                self.true_negatives,
                self.false_positives,
            ],
            "first_case_time": _iso(self.first_case_time),
            "last_case_time": _iso(self.last_case_time),
            "claims_year_start": _iso(self.claims_year_start),
            "reader_pairs": list(self.reader_pairs),
            # Only once a chart alarmed, or a claims test was restarted after review.
            **({"alarmed_charts": sorted(self.alarmed_charts)} if self.alarmed_charts else {}),
            **({"claims_restarts": self.claims_restarts} if self.claims_restarts else {}),
            # Only while a chart is above zero; None where the start predates the state.
            **(
                {
                    "change_starts": {
                        name: [_iso(start) for start in starts]
                        for name, starts in self.change_starts.items()
                    }
                }
                if self.change_starts
                else {}
            ),
        }

    def label_free_state(self) -> dict[str, Any]:
        return self._common_state(label_free=True) | {
            "predictions": self.predictions,
            "score_reference": list(self.score_reference),
            "acquisition_reference": {k: dict(v) for k, v in self.acquisition_reference.items()},
            # Only once re-baselined: most streams never are, and pay nothing for it.
            **({"rebaseline_id": self.rebaseline_id} if self.rebaseline_id else {}),
        }

    @classmethod
    def from_states(
        cls,
        labelled: dict[str, Any] | None,
        label_free: dict[str, Any] | None,
        plan: MonitorPolicy | None = None,
    ) -> Self:
        """The monitor of a stream from its two table states (either may be absent).

        A state of version 1 or 2 is a whole stream in the labelled table; once this
        release has written the stream's label-free state, that one is the newer.

        ``plan`` is the policy new streams get (:func:`planned_policy`). A stream whose stored
        policy predates the fleet budget (its layout has no budget: every test then had
        ``arl0_cases`` and the claims tests ``claims_alpha``, whatever the fleet) is moved to
        the plan's budget (:func:`budgeted_policy`); without a plan, or with a plan without a
        budget, it keeps its stored policy. Raises :class:`StateError` when a running state
        cannot be carried into the budgeted design.
        """
        parts = [state for state in (labelled, label_free) if state is not None]
        if not parts:
            raise ValueError("a stream needs at least one of its two states")
        for state in parts:
            if state.get("state_version") not in (1, 2, 3, STATE_VERSION):
                raise ValueError(f"stream state version {state.get('state_version')!r} unknown")
        claims = next((dict(p["claims"]) for p in parts if p["claims"]), {})
        # Added within state version 3: states written before it have none (unadjusted).
        reference_prevalence = next(
            (p["reference_prevalence"] for p in parts if p.get("reference_prevalence")), None
        )
        monitor = cls(
            policy=_policy(parts[0]["policy"], plan),
            claims=claims,
            reference_prevalence=reference_prevalence,
            # Both added within state version 3: none in states written before them.
            claim_lower_bounds=next(
                (dict(p["claim_lower_bounds"]) for p in parts if p.get("claim_lower_bounds")), {}
            ),
            unmonitored_raised=any(p.get("unmonitored_raised", False) for p in parts),
        )
        migrated = monitor.policy != _policy(parts[0]["policy"])
        running: dict[str, Any] = {}
        for state in parts:
            if state["state_version"] < 3 or state is label_free:
                monitor._load_label_free(state)
            if state is labelled:
                monitor._load_labelled(state)
            monitor.applied.update({k: _applied(v) for k, v in state["applied"].items()})
            monitor.statistics.update({k: (v[0], v[1]) for k, v in state["statistics"].items()})
            detectors = state["detectors"]
            if state["state_version"] == 1:  # whole detector states: their running part
                detectors = {name: whole["state"] for name, whole in detectors.items()}
            running.update(detectors)
        # Detectors a later release designs (absent from an older state) start fresh.
        monitor.detectors = monitor._designed_detectors()
        for name, detector_state in running.items():
            if name not in monitor.detectors:
                if name.startswith(tuple(monitor.unmonitored)):
                    continue  # its metric is raised as unmonitored, not the stream refused
                raise ValueError(f"stream state has a detector {name!r} its design lacks")
            designed = monitor.detectors[name].to_state()
            chart = monitor.detectors[name]
            if isinstance(chart, BernoulliMultiCUSUM) and name.endswith("_cusum"):
                metric: ClaimedMetric = "sensitivity" if name.startswith("sens") else "specificity"
                detector_state = migrate_single_cusum(chart, detector_state, monitor.levels[metric])
                if migrated:
                    detector_state = _below_thresholds(chart, detector_state)
            try:
                restored = Detector.from_state({**designed, "state": detector_state})
            except StateError as error:
                if not migrated:
                    raise
                raise StateError(
                    f"{name} of a stream whose policy predates the fleet budget cannot be "
                    f"carried into the budgeted design: {error}"
                ) from error
            monitor.detectors[name] = restored
        monitor._check_change_starts()
        monitor._read_drift_statistics()
        return monitor

    def _read_drift_statistics(self) -> None:
        """A windowed drift test's last statistic and threshold, from its own state (the
        stream's state keeps no copy; one written before kept it, and it stays)."""
        for name, detector in self.detectors.items():
            reported = detector.last_reported if isinstance(detector, WINDOWED_DRIFT) else None
            if reported is not None:
                self.statistics[name] = reported

    def _check_change_starts(self) -> None:
        """Keep a run start only where its CUSUM is in a run: a start the chart's state does
        not match (a release that did not keep them ran the chart meanwhile) is unknown."""
        kept: dict[str, list[datetime | None]] = {}
        for name, chart in self.detectors.items():
            if not isinstance(chart, BernoulliMultiCUSUM) or not any(chart.run_lengths):
                continue
            starts = self.change_starts.get(name, [])
            if len(starts) != len(chart.run_lengths):
                starts = [None] * len(chart.run_lengths)
            kept[name] = [
                start if run > 0 else None
                for start, run in zip(starts, chart.run_lengths, strict=True)
            ]
        self.change_starts = {name: starts for name, starts in kept.items() if any(starts)}

    def _load_labelled(self, state: dict[str, Any]) -> None:
        tp, fn, tn, fp = state["counts"]
        self.true_positives, self.false_negatives = tp, fn
        self.true_negatives, self.false_positives = tn, fp
        self.strata = {k: list(v) for k, v in state["strata"].items()}
        self.first_case_time = _parse(state["first_case_time"])
        self.last_case_time = _parse(state["last_case_time"])
        # Added within state version 3: a stream from before it starts its year at its first case.
        self.claims_year_start = _parse(state.get("claims_year_start", state["first_case_time"]))
        # Added within state version 1: states written before it have no read pairs.
        self.reader_pairs = list(state.get("reader_pairs", [0, 0, 0, 0]))
        # Added within state version 4: none in states written before them (an alarm before
        # then restarts nothing: the release then kept the claims test rejected all year).
        self.alarmed_charts = set(state.get("alarmed_charts", []))
        self.claims_restarts = state.get("claims_restarts", 0)
        # Added within state version 4: a run under way in an older state began at an
        # unknown time (checked against the charts' runs once they are loaded).
        self.change_starts = {
            name: [_parse(start) for start in starts]
            for name, starts in state.get("change_starts", {}).items()
        }

    def _load_label_free(self, state: dict[str, Any]) -> None:
        self.predictions = state["predictions"]
        self.score_reference = list(state["score_reference"])
        self.acquisition_reference = {
            k: dict(v) for k, v in state.get("acquisition_reference", {}).items()
        }
        # Added within state version 3: states written before it were never re-baselined.
        self.rebaseline_id = state.get("rebaseline_id")


BUDGET_FIELDS = (
    "fleet_false_alarms_per_year",
    "fleet_streams",
    "stream_predictions_per_year",
    "followup_completeness",
    "planned_prevalence",
    "fleet_pooled_groups",
)
"""The plan's fields a stream whose policy predates the budget takes (:func:`budgeted_policy`)."""


def predates_budget(stored: list[Any] | dict[str, Any]) -> bool:
    """Whether a stored policy was written before policies had a fleet budget (a layout
    without ``fleet_false_alarms_per_year``; the release before it stored seven fields)."""
    if isinstance(stored, dict):
        return "fleet_false_alarms_per_year" not in stored
    names = [f.name for f in fields(MonitorPolicy)]
    return len(stored) <= names.index("fleet_false_alarms_per_year")


def budgeted_policy(stored: MonitorPolicy, plan: MonitorPolicy) -> MonitorPolicy:
    """A policy from before the budget, moved to the plan's budget and volumes.

    Only what the budget decides changes: every test's ARL0 and the claims tests' alpha,
    which the old layout fixed at ``arl0_cases`` and ``claims_alpha`` for every test of every
    stream. What shaped the stream's running states stays (the drops, so the charts' levels
    and alternatives; the reference size and windows; the acceptable-level rule, whose
    default the old release's states meet by charting at the point estimate until their
    registration gives the claims' bounds). So each running state means under the new design
    what it meant under the old: a CUSUM's sum is the same log-likelihood ratio (kept below
    its new threshold, :func:`_below_thresholds`), a claims test's evidence the same mixture.
    """
    return replace(stored, **{name: getattr(plan, name) for name in BUDGET_FIELDS})


def _policy(stored: list[Any] | dict[str, Any], plan: MonitorPolicy | None = None) -> MonitorPolicy:
    policy = MonitorPolicy(**stored) if isinstance(stored, dict) else MonitorPolicy(*stored)
    # JSON gives lists back; the policy is hashed (design caches), so tuples again
    explicit = tuple((metric, float(level)) for metric, level in policy.explicit_acceptable)
    policy = replace(policy, explicit_acceptable=explicit)
    if plan is not None and plan.budget() is not None and predates_budget(stored):
        return budgeted_policy(policy, plan)
    return policy


def _below_thresholds(chart: BernoulliMultiCUSUM, running: dict[str, Any]) -> dict[str, Any]:
    """A chart's running state with each CUSUM kept below its threshold: a stream moved to a
    design with a lower threshold (:func:`budgeted_policy`) does not alarm on what it had
    summed. Lowering a CUSUM's sum never makes it alarm sooner, so the design's false-alarm
    guarantee holds; a state already below every threshold is returned as it is."""
    return chart.running_state_below_thresholds(running)


def _applied(stored: list[int]) -> tuple[int, int, int]:
    """An applied position as stored: (offset, index, rank), or (offset, rank) as states
    from before batches wrote it (their records held one event: index 0)."""
    if len(stored) == 2:
        return (stored[0], 0, stored[1])
    return (stored[0], stored[1], stored[2])


def _iso(time: datetime | None) -> str | None:
    return time.isoformat() if time else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
