"""Cases, reads and follow-ups of a simulated fleet, in simulated event time.

Everything is drawn from :class:`random.Random` generators seeded by the scenario seed
and a name (a site, a backfill), so the same scenario and seed give the same fleet, and
adding a change at one site leaves the other sites' draws untouched. Records come out
in arrival order: live records arrive at their event time, a retrospective backfill at
its upload time (in event-time order within it); a silent site's records never arrive.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Literal, TypeVar

from postmarket.contracts.events import Decision, Label, ReadRound, StudyDesign, TruthSource
from simulator.calibration import class_shift, logit, shifted_score
from simulator.heterogeneity import SitePerformance, device_operating_point
from simulator.malformed import BadBatchEvent
from simulator.scenario import (
    Device,
    Effect,
    GroundTruth,
    PerformanceDrift,
    Scanner,
    ScannerChange,
    Scenario,
    Site,
    SiteSilence,
    VersionRollout,
)

SECONDS_PER_DAY = 86_400
THICKNESS_CHOICES_MM: dict[str, tuple[float, ...]] = {
    "sub_mm": (0.5, 0.625, 0.625, 0.8),
    "1_2mm": (1.0, 1.0, 1.25, 1.5, 2.0),
    "about_5mm": (5.0,),
    "other": (3.0, 7.5),
}
"""Concrete slice thicknesses a scanner reconstructs in each band (repeats weight them)."""

T = TypeVar("T")

DELAY_SIGMA = 0.8
"""Log-scale spread of follow-up delays: most within a few times the median."""


@dataclass(frozen=True)
class SimulatedCase:
    """One study at one site and the AI device's output on it."""

    site_id: str
    device_id: str
    device_version: str
    task: str
    study_uid: str
    event_time: datetime
    arrival_time: datetime
    day: int
    label: Label
    score: float
    decision: Decision
    operating_threshold: float
    scanner: Scanner
    slice_thickness_mm: float | None
    study_design: StudyDesign
    injections: tuple[str, ...] = ()

    @property
    def stream(self) -> tuple[str, str, str, str]:
        return (self.device_id, self.device_version, self.site_id, self.task)


@dataclass(frozen=True)
class SimulatedFollowUp:
    """One ground-truth statement about a case: a blinded read, pathology or imaging."""

    site_id: str
    study_uid: str
    event_time: datetime
    arrival_time: datetime
    day: int
    label: Label
    source: TruthSource
    study_design: StudyDesign
    reader_id: str | None = None
    read_round: ReadRound | None = None


@dataclass(frozen=True)
class MalformedRecord:
    """An invalid record written straight to an input topic (it must be dead-lettered)."""

    site_id: str
    topic: Literal["predictions", "followups"]
    key: bytes
    value: bytes
    defect: str
    injection: str
    event_time: datetime
    arrival_time: datetime
    day: int


@dataclass(frozen=True)
class MalformedBatchRecord:
    """A batch a site's collector signs correctly, holding bad events among good ones.

    The good events are the site's own cases and their decisive follow-ups, made by the
    collector (de-identified, pseudonymised) as any other; the bad ones are fixed bytes at
    fixed places, so what must be dead-lettered, and where, is known before anything is sent.
    """

    site_id: str
    injection: str
    number: int
    """Which batch of its injection (0 first)."""
    cases: tuple[SimulatedCase, ...]
    followups: tuple[SimulatedFollowUp, ...]
    """One decisive follow-up per case, in the same order: every good case is settled."""
    bad: tuple[BadBatchEvent, ...]
    event_time: datetime
    arrival_time: datetime
    day: int

    @property
    def name(self) -> str:
        return f"{self.injection}-{self.number}"


SimulatedRecord = SimulatedCase | SimulatedFollowUp | MalformedRecord | MalformedBatchRecord


@dataclass
class Sequenced:
    """Sort handle: arrival, then event time, then generation order (all deterministic)."""

    arrival_time: datetime
    event_time: datetime
    sequence: int
    record: SimulatedRecord = field(compare=False)

    def key(self) -> tuple[datetime, datetime, int]:
        return (self.arrival_time, self.event_time, self.sequence)


# --- small draws ---------------------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def weighted_choice(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    total = sum(weight for _, weight in options)
    point = rng.random() * total
    for option, weight in options:
        point -= weight
        if point < 0:
            return option
    return options[-1][0]


def delay_days(rng: random.Random, median: float, maximum: float) -> float:
    """A log-normal delay (days to months) clipped to ``maximum`` days."""
    return min(maximum, median * math.exp(rng.gauss(0.0, DELAY_SIGMA)))


def study_uid(seed: int, namespace: str, number: int) -> str:
    """A unique, seeded Study Instance UID under the UUID-derived 2.25 root."""
    digest = hashlib.sha256(f"{seed}|{namespace}|{number}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# --- the device -----------------------------------------------------------------------------


@cache
def effect_shifts(device: Device, effect: Effect) -> tuple[float, float]:
    """(positive, negative) logit shifts of scores under ``effect`` for ``device``."""
    point = device_operating_point(device)
    positive = (
        class_shift(point, True, effect.sensitivity)
        if effect.sensitivity is not None
        else effect.score_shift
    )
    negative = (
        class_shift(point, False, effect.specificity)
        if effect.specificity is not None
        else effect.score_shift
    )
    return positive, negative


def site_offset(device: Device, prevalence: float) -> float:
    """Logit offset that recalibrates the device to a site's prevalence (0 unless asked).

    With class-conditional scores fixed, P(positive | score) at a site of prevalence p is
    the reference posterior moved by logit(p) - logit(reference prevalence); moving the
    threshold by the same offset keeps every decision, so sensitivity and specificity stay.
    """
    if not device.site_calibration:
        return 0.0
    return logit(prevalence) - logit(device.reference_prevalence)


def site_threshold(device: Device, prevalence: float) -> float:
    """The operating threshold the device uses at a site (see :func:`site_offset`)."""
    point = device_operating_point(device)
    return round(shifted_score(point.threshold, site_offset(device, prevalence)), 6)


def case_shift(
    device: Device, positive: bool, effects: Sequence[Effect], baseline: tuple[float, float]
) -> float:
    """The logit shift of one class's scores at a site whose own shifts are ``baseline``.

    An effect's target rate is the rate the site reaches under that effect alone, whatever
    its own performance (its shift replaces the site's); a bare score shift adds to it.
    """
    index = 0 if positive else 1
    shift = baseline[index]
    for effect in effects:
        target = effect.sensitivity if positive else effect.specificity
        replaced = 0.0 if target is None else baseline[index]
        shift += effect_shifts(device, effect)[index] - replaced
    return shift


def device_output(
    rng: random.Random,
    device: Device,
    label: Label,
    effects: Sequence[Effect],
    prevalence: float,
    baseline: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, Decision]:
    """A calibrated score for a case of true ``label`` at a site whose true performance is
    ``baseline`` shifts from the registered device, moved by ``effects``, and its decision."""
    point = device_operating_point(device)
    positive = label == "positive"
    raw = (
        rng.betavariate(point.a + 1.0, point.b)
        if positive
        else rng.betavariate(point.a, point.b + 1.0)
    )
    shift = case_shift(device, positive, effects, baseline)
    score = round(shifted_score(raw, shift + site_offset(device, prevalence)), 6)
    return score, "positive" if score >= site_threshold(device, prevalence) else "negative"


# --- the site's state on a given day --------------------------------------------------------


def active_version(
    scenario: Scenario, device: Device, site_id: str, day: int
) -> VersionRollout | None:
    """The latest rollout of ``device`` reaching ``site_id`` by ``day`` (None: the base)."""
    current: VersionRollout | None = None
    for injection in scenario.injections:
        if (
            isinstance(injection, VersionRollout)
            and injection.device == device.id
            and (not injection.sites or site_id in injection.sites)
            and injection.day <= day
            and (current is None or injection.day >= current.day)
        ):
            current = injection
    return current


def active_drifts(
    scenario: Scenario, device: Device, site_id: str, day: int
) -> list[PerformanceDrift]:
    """The performance drifts of ``device`` at ``site_id`` begun by ``day``."""
    return [
        injection
        for injection in scenario.injections
        if isinstance(injection, PerformanceDrift)
        and injection.device == device.id
        and (not injection.sites or site_id in injection.sites)
        and injection.day <= day
    ]


def scanner_options(
    scenario: Scenario, site: Site, modality: str, day: int
) -> list[tuple[tuple[Scanner, ScannerChange | None], float]]:
    """The site's scanners of ``modality`` on ``day`` with their shares of its cases."""
    options: list[tuple[tuple[Scanner, ScannerChange | None], float]] = [
        ((s, None), s.share) for s in site.scanners if s.modality == modality
    ]
    for injection in scenario.injections:
        if (
            isinstance(injection, ScannerChange)
            and injection.site == site.id
            and injection.scanner.modality == modality
            and injection.day <= day
        ):
            share = injection.scanner.share
            options = [(option, weight * (1.0 - share)) for option, weight in options]
            options.append(((injection.scanner, injection), share))
    return options


def slice_thickness(rng: random.Random, scanner: Scanner) -> float | None:
    if not scanner.slice_thickness:
        return None
    band = weighted_choice(rng, sorted(scanner.slice_thickness.items()))
    return rng.choice(THICKNESS_CHOICES_MM[band])


def silence_day(scenario: Scenario, site_id: str) -> int | None:
    days = [i.day for i in scenario.injections if isinstance(i, SiteSilence) and i.site == site_id]
    return min(days) if days else None


# --- cases and their ground truth -----------------------------------------------------------


@dataclass(frozen=True)
class CaseContext:
    scenario: Scenario
    site: Site
    device: Device
    namespace: str
    study_design: StudyDesign
    performance: SitePerformance
    upload_time: datetime | None = None


def simulate_case(
    rng: random.Random, context: CaseContext, number: int, day: int, event_time: datetime
) -> SimulatedCase:
    """One case of ``context.device`` at ``context.site`` on simulated ``day``."""
    scenario, site, device = context.scenario, context.site, context.device
    rollout = active_version(scenario, device, site.id, day)
    scanner, change = weighted_choice(rng, scanner_options(scenario, site, device.modality, day))
    thickness = slice_thickness(rng, scanner)
    performance = context.performance
    prevalence = performance.prevalence
    label: Label = "positive" if rng.random() < prevalence else "negative"
    changes: list[VersionRollout | ScannerChange | PerformanceDrift]
    changes = [i for i in (rollout, change) if i is not None]
    changes += active_drifts(scenario, device, site.id, day)
    effects = [i.effect for i in changes]
    score, decision = device_output(
        rng, device, label, effects, prevalence, performance.baseline_shifts
    )
    return SimulatedCase(
        site_id=site.id,
        device_id=device.id,
        device_version=rollout.version if rollout else device.version,
        task=device.task,
        study_uid=study_uid(scenario.seed, context.namespace, number),
        event_time=event_time,
        arrival_time=max(event_time, context.upload_time or event_time),
        day=day,
        label=label,
        score=score,
        decision=decision,
        operating_threshold=site_threshold(device, prevalence),
        scanner=scanner,
        slice_thickness_mm=thickness,
        study_design=context.study_design,
        injections=tuple(i.name for i in changes),
    )


def read_label(rng: random.Random, truth: Label, sensitivity: float, specificity: float) -> Label:
    """What a reader of the given accuracy calls a case whose true label is ``truth``."""
    if truth == "positive":
        return "positive" if rng.random() < sensitivity else "negative"
    return "negative" if rng.random() < specificity else "positive"


def simulate_followups(
    rng: random.Random,
    case: SimulatedCase,
    truth_model: GroundTruth,
    start: datetime,
    upload_time: datetime | None = None,
) -> list[SimulatedFollowUp]:
    """The follow-ups a case gets: none (lost), or reads (adjudicated) or a final outcome."""
    complete = rng.random() < truth_model.completeness_of(case.label == "positive")
    partial = not complete and rng.random() < 0.5

    def followup(
        after_days: float,
        label: Label,
        source: TruthSource,
        reader: str | None = None,
        read_round: ReadRound | None = None,
    ) -> SimulatedFollowUp:
        time = case.event_time + timedelta(seconds=round(after_days * SECONDS_PER_DAY))
        arrival = max(time, upload_time) if upload_time else time
        return SimulatedFollowUp(
            site_id=case.site_id,
            study_uid=case.study_uid,
            event_time=time,
            arrival_time=arrival,
            day=(arrival - start).days,
            label=label,
            source=source,
            study_design="retrospective" if upload_time and time < upload_time else "prospective",
            reader_id=reader,
            read_round=read_round,
        )

    median, maximum = truth_model.median_delay_days, truth_model.max_delay_days
    if truth_model.method == "follow_up":
        if not complete:
            return []
        by_pathology = case.label == "positive" and rng.random() < truth_model.pathology_share
        source: TruthSource = "pathology" if by_pathology else "follow_up_imaging"
        return [followup(delay_days(rng, median, maximum), case.label, source)]
    if not (complete or partial):
        return []
    readers = truth_model.readers
    pool = [f"{case.site_id}-reader-{k}" for k in range(1, readers.per_site + 1)]
    first_reader, second_reader, adjudicator = rng.sample(pool, 3)
    first_label = read_label(rng, case.label, readers.sensitivity, readers.specificity)
    first_after = delay_days(rng, median, maximum)
    reads = [followup(first_after, first_label, "reader", first_reader, "first")]
    if partial:
        return reads
    second_label = read_label(rng, case.label, readers.sensitivity, readers.specificity)
    second_after = delay_days(rng, median, maximum)
    reads.append(followup(second_after, second_label, "reader", second_reader, "second"))
    if first_label != second_label:
        adjudicated = read_label(
            rng, case.label, readers.adjudicator_sensitivity, readers.adjudicator_specificity
        )
        after = max(first_after, second_after) + delay_days(rng, median / 2.0, maximum)
        reads.append(followup(after, adjudicated, "reader", adjudicator, "adjudication"))
    return reads
