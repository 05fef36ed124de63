"""A simulated fleet's records through the stream monitors in event time, without Kafka.

What the worker does per stream, in one process: each case is a prediction of its stream
(:meth:`StreamMonitor.observe_score`) when it arrives; its follow-ups are joined by study
and, once they settle its ground truth (the worker's adjudication rule,
:func:`streams.truth.final_truth`), the outcome is observed (:meth:`StreamMonitor.observe`)
at the arrival of the follow-up that settled it. Each stream's monitor is designed from the
registered claims of its version (:func:`simulator.ground_truth.registry_entries`), as the
worker designs it from the registry. It is for checks and benchmarks that need the
monitors' verdicts on many simulated site-years in seconds; what the worker adds (Kafka,
exactly-once, tables) is tested elsewhere.

Records must come in arrival order, as :func:`simulator.fleet_records.fleet_records` or
:func:`simulator.fleet_records.site_records` give them (a site's records alone are enough: every
stream is one site's).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from postmarket.contracts.events import (
    AcquisitionFeatures,
    FollowUp,
    JoinPosition,
    Outcome,
    RegistryEntry,
    StreamKey,
    slice_thickness_band,
)
from simulator.fleet import SimulatedCase, SimulatedFollowUp, SimulatedRecord
from simulator.ground_truth import registry_entries, stream_key
from simulator.scenario import Scanner, Scenario
from streams.acquisition import AcquisitionCategories, acquisition_categories
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.detector_design import is_label_free
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import Signal, StreamMonitor
from streams.truth import final_truth

CT_KVP = 120.0
"""The tube voltage the simulator's CT headers carry (:mod:`simulator.headers`)."""
REPLAY_TOPIC = "simulator.replay"


@dataclass(frozen=True)
class ReplayAlarm:
    """A detector that fired on a stream, and when in simulated time."""

    stream_key: str
    site_id: str
    detector: str
    metric: str
    raised_at: datetime
    """Arrival of the record it fired on: the prediction, or the follow-up that settled
    the outcome (the calendar time at which anyone could know)."""
    case_time: datetime
    """Event time of the case it fired on."""
    stream_predictions: int
    label_free: bool


@dataclass
class _OpenCase:
    case: SimulatedCase
    followups: list[FollowUp] = field(default_factory=list)


class MonitorReplay:
    """Per-stream :class:`StreamMonitor` state fed with a scenario's records."""

    def __init__(self, scenario: Scenario, policy: MonitorPolicy) -> None:
        self.scenario = scenario
        self.policy = policy
        self.monitors: dict[str, StreamMonitor] = {}
        self.alarms: list[ReplayAlarm] = []
        self._registry: dict[tuple[str, str], RegistryEntry] = {
            (entry.device_id, entry.device_version): entry for entry in registry_entries(scenario)
        }
        self._open: dict[str, _OpenCase] = {}
        self._offset = 0
        self._categories: dict[tuple[str, str, str, float | None], AcquisitionCategories] = {}

    def monitor(self, case: SimulatedCase) -> StreamMonitor:
        """The monitor of the case's stream, designed from its version's registration."""
        key = stream_key(case)
        monitor = self.monitors.get(key)
        if monitor is None:
            entry = self._registry.get((case.device_id, case.device_version))
            claims = claimed_performance(entry, case.task)
            monitor = StreamMonitor.for_claims(
                claims,
                self.policy,
                entry.reference_prevalence if entry is not None and claims else None,
                claimed_lower_bounds(entry, case.task),
            )
            self.monitors[key] = monitor
        return monitor

    def feed(self, records: Iterable[SimulatedRecord]) -> list[ReplayAlarm]:
        """Feed records in arrival order; the alarms they raised (also kept in ``alarms``)."""
        raised: list[ReplayAlarm] = []
        for record in records:
            if isinstance(record, SimulatedCase):
                raised += self._prediction(record)
            elif isinstance(record, SimulatedFollowUp):
                raised += self._followup(record)
        self.alarms += raised
        return raised

    def _position(self) -> JoinPosition:
        self._offset += 1
        return JoinPosition.model_construct(
            topic=REPLAY_TOPIC, partition=0, offset=self._offset, rank=0
        )

    def _prediction(self, case: SimulatedCase) -> list[ReplayAlarm]:
        monitor = self.monitor(case)
        self._open[case.study_uid] = _OpenCase(case)
        signals = monitor.observe_score(
            case.score, self._position(), case.decision, self.categories(case)
        )
        return self._alarms(case, monitor, signals, case.arrival_time)

    def _followup(self, record: SimulatedFollowUp) -> list[ReplayAlarm]:
        open_case = self._open.get(record.study_uid)
        if open_case is None:  # settled already, or its case never arrived
            return []
        open_case.followups.append(
            FollowUp.model_construct(
                event_id=uuid.uuid4(),
                site_id=record.site_id,
                case_pseudonym=record.study_uid,
                event_time=record.event_time,
                label=record.label,
                source=record.source,
                reader_pseudonym=record.reader_id,
                read_round=record.read_round,
                blinded=True,
                collector_version=REPLAY_TOPIC,
                study_design=record.study_design,
            )
        )
        truth = final_truth(open_case.followups)
        if truth is None:
            return []
        del self._open[record.study_uid]
        case = open_case.case
        monitor = self.monitor(case)
        outcome = Outcome.model_construct(
            event_id=uuid.uuid4(),
            prediction_event_id=uuid.uuid4(),
            followup_event_ids=truth.followup_event_ids,
            stream=StreamKey.model_construct(
                device_id=case.device_id,
                device_version=case.device_version,
                site_id=case.site_id,
                task=case.task,
            ),
            case_pseudonym=case.study_uid,
            prediction_time=case.event_time,
            score=case.score,
            decision=case.decision,
            operating_threshold=case.operating_threshold,
            acquisition=self.acquisition(case.scanner, case.slice_thickness_mm),
            label=truth.label,
            truth_source=truth.source,
            truth_time=truth.time,
            study_design=case.study_design,
            joined_at=self._position(),
            blinded_reads=truth.blinded_reads,
        )
        return self._alarms(case, monitor, monitor.observe(outcome), record.arrival_time)

    def _alarms(
        self,
        case: SimulatedCase,
        monitor: StreamMonitor,
        signals: list[Signal],
        raised_at: datetime,
    ) -> list[ReplayAlarm]:
        return [
            ReplayAlarm(
                stream_key(case),
                case.site_id,
                signal.detector,
                signal.metric,
                raised_at,
                case.event_time,
                monitor.predictions,
                is_label_free(signal.detector),
            )
            for signal in signals
        ]

    @staticmethod
    def acquisition(scanner: Scanner, thickness_mm: float | None) -> AcquisitionFeatures:
        """What the collector reads from the simulated header (:mod:`simulator.headers`)."""
        return AcquisitionFeatures.model_construct(
            modality=scanner.modality,
            manufacturer=scanner.manufacturer,
            model=scanner.model,
            software_versions=scanner.software_version,
            slice_thickness_mm=thickness_mm,
            slice_thickness_band=slice_thickness_band(thickness_mm),
            kvp=CT_KVP if scanner.modality == "CT" else None,
        )

    def categories(self, case: SimulatedCase) -> AcquisitionCategories:
        scanner = case.scanner
        key = (scanner.manufacturer, scanner.model, scanner.modality, case.slice_thickness_mm)
        categories = self._categories.get(key)
        if categories is None:
            acquisition = self.acquisition(scanner, case.slice_thickness_mm)
            categories = self._categories[key] = acquisition_categories(acquisition)
        return categories
