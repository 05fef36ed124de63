"""What the simulator injected, where and when: the key against which detections are scored.

For every injected change the record names the streams it touched (device, version, site,
task), the first affected case as its ordinal within that stream and its simulated time
and day, the expected operating characteristics under the change, and what was realised
(true-label confusion counts). Every stream is listed too, with whether any change
touched it, so alerts on untouched streams count as false alarms.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from postmarket.contracts import Claim, RegistryEntry
from simulator.calibration import OperatingPoint
from simulator.fleet import (
    MalformedBatchRecord,
    MalformedRecord,
    SimulatedCase,
    SimulatedFollowUp,
    SimulatedRecord,
    case_shift,
    effect_shifts,
)
from simulator.heterogeneity import (
    SitePerformance,
    device_operating_point,
    fleet_performance,
    site_performance,
)
from simulator.scenario import (
    Backfill,
    Device,
    Effect,
    Interval,
    MalformedBatch,
    MalformedBurst,
    PerformanceDrift,
    ScannerChange,
    Scenario,
    SiteSilence,
    VersionRollout,
)

EXPECTED_SIGNAL = {
    "scanner_change": "performance_drift",
    "performance_drift": "performance_drift",
    "version_rollout": "performance_below_claims",
    "unregistered_version": "unregistered_version",
    "site_silence": "site_silent",
    "malformed_burst": "dead_letters",
    "malformed_batch": "dead_letters_in_batch",
    "backfill": "retrospective_data",
}


def stream_key(case: SimulatedCase) -> str:
    """The stream of a case as :meth:`StreamKey.as_key` spells it."""
    return "|".join(case.stream)


def device_claims(device: Device) -> tuple[Claim, ...]:
    """The sensitivity and specificity claims of a device's registration testing."""
    rates: tuple[tuple[Literal["sensitivity", "specificity"], Interval], ...] = (
        ("sensitivity", device.sensitivity),
        ("specificity", device.specificity),
    )
    return tuple(
        Claim(
            task=device.task,
            metric=metric,
            value=interval.value,
            ci_lower=interval.ci_lower,
            ci_upper=interval.ci_upper,
            test_database=device.test_database,
        )
        for metric, interval in rates
    )


def registry_entries(scenario: Scenario) -> list[RegistryEntry]:
    """The registered versions, with their claims and their device's reference prevalence.

    An unregistered rollout has no entry; a registered one keeps its device's calibration.
    """
    entries = [
        RegistryEntry(
            device_id=device.id,
            device_version=device.version,
            registration_status="registered",
            change_class=device.change_class,
            claims=device_claims(device),
            updated_at=scenario.start,
            reference_prevalence=device.reference_prevalence,
        )
        for device in scenario.devices
    ]
    for rollout in scenario.injections:
        if isinstance(rollout, VersionRollout) and rollout.registered:
            device = scenario.device(rollout.device)
            entries.append(
                RegistryEntry(
                    device_id=device.id,
                    device_version=rollout.version,
                    registration_status="registered",
                    change_class=rollout.change_class,
                    claims=device_claims(device),
                    updated_at=scenario.start + timedelta(days=max(0, rollout.day - 1)),
                    reference_prevalence=device.reference_prevalence,
                )
            )
    return entries


def expected_rates(point: OperatingPoint, shifts: tuple[float, float]) -> dict[str, float]:
    return {
        "sensitivity": round(point.sensitivity(shifts[0]), 4),
        "specificity": round(point.specificity(shifts[1]), 4),
    }


def effect_expectation(device: Device, effect: Effect) -> dict[str, float]:
    """Sensitivity and specificity of ``device`` under ``effect`` alone."""
    return expected_rates(device_operating_point(device), effect_shifts(device, effect))


def site_effect_expectation(
    device: Device, effect: Effect, performance: SitePerformance
) -> dict[str, float]:
    """Sensitivity and specificity of ``device`` under ``effect`` at a site of its own
    true performance (a target rate is reached whatever that was; a score shift adds)."""
    baseline = performance.baseline_shifts
    shifts = (
        case_shift(device, True, (effect,), baseline),
        case_shift(device, False, (effect,), baseline),
    )
    return expected_rates(device_operating_point(device), shifts)


@dataclass
class StreamTally:
    """Running counts of one stream (or of one change's cases in one stream)."""

    cases: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    first_ordinal: int = 0
    first_day: int = 0
    confusion: Counter[str] = field(default_factory=Counter)
    designs: set[str] = field(default_factory=set)
    injections: set[str] = field(default_factory=set)

    def add(self, case: SimulatedCase, ordinal: int) -> None:
        if self.cases == 0:
            self.first_time, self.first_ordinal, self.first_day = case.event_time, ordinal, case.day
        self.cases += 1
        self.last_time = case.event_time
        predicted = "p" if case.decision == "positive" else "n"
        self.confusion[("t" if predicted == case.label[0] else "f") + predicted] += 1
        self.designs.add(case.study_design)
        self.injections.update(case.injections)

    def realised(self) -> dict[str, Any]:
        tp, fn = self.confusion["tp"], self.confusion["fn"]
        tn, fp = self.confusion["tn"], self.confusion["fp"]
        return {
            "tp": tp,
            "fn": fn,
            "tn": tn,
            "fp": fp,
            "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
            "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
        }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def arriving_cases(records: list[SimulatedRecord]) -> list[SimulatedCase]:
    """Every case in arrival order, the good cases of malformed batches included (they are
    cases of their stream like any other)."""
    cases: list[SimulatedCase] = []
    for record in records:
        if isinstance(record, SimulatedCase):
            cases.append(record)
        elif isinstance(record, MalformedBatchRecord):
            cases.extend(record.cases)
    return cases


def tally_streams(
    records: list[SimulatedRecord],
) -> tuple[dict[str, StreamTally], dict[tuple[str, str], StreamTally]]:
    """Per stream, and per (change, stream), counts in arrival order."""
    streams: dict[str, StreamTally] = {}
    changes: dict[tuple[str, str], StreamTally] = {}
    for record in arriving_cases(records):
        key = stream_key(record)
        tally = streams.setdefault(key, StreamTally())
        tally.add(record, tally.cases + 1)
        for name in record.injections:
            changes.setdefault((name, key), StreamTally()).add(record, tally.cases)
    return streams, changes


def _affected(
    scenario: Scenario, name: str, changes: dict[tuple[str, str], StreamTally]
) -> list[dict[str, Any]]:
    injection = next(i for i in scenario.injections if i.name == name)
    effect = getattr(injection, "effect", None)
    affected = []
    for (change, key), tally in sorted(changes.items()):
        if change != name:
            continue
        entry: dict[str, Any] = {
            "stream_key": key,
            "first_case_ordinal": tally.first_ordinal,
            "first_case_time": _time(tally.first_time),
            "first_case_day": tally.first_day,
            "cases": tally.cases,
            "realised": tally.realised(),
        }
        if isinstance(effect, Effect):
            device_id, _, site_id, _ = key.split("|")
            device, site = scenario.device(device_id), scenario.site(site_id)
            performance = site_performance(scenario, site, device)
            entry["expected"] = site_effect_expectation(device, effect, performance)
        affected.append(entry)
    return affected


def injection_truth(
    scenario: Scenario,
    records: list[SimulatedRecord],
    streams: dict[str, StreamTally],
    changes: dict[tuple[str, str], StreamTally],
) -> list[dict[str, Any]]:
    """One ground-truth entry per injected change, in scenario order."""
    entries = []
    for injection in scenario.injections:
        entry: dict[str, Any] = {
            "name": injection.name,
            "kind": injection.kind,
            "description": injection.description,
            "day": injection.day,
            "time": (scenario.start + timedelta(days=injection.day)).isoformat(),
            "affected_streams": _affected(scenario, injection.name, changes),
        }
        if isinstance(injection, ScannerChange):
            entry["site"] = injection.site
            entry["scanner"] = injection.scanner.model_dump(mode="json")
            entry["expected"] = {
                device.id: effect_expectation(device, injection.effect)
                for device in scenario.devices
                if device.modality == injection.scanner.modality
            }
        elif isinstance(injection, VersionRollout):
            device = scenario.device(injection.device)
            entry |= {
                "device": injection.device,
                "version": injection.version,
                "sites": list(injection.sites) or [s.id for s in scenario.sites],
                "registered": injection.registered,
                "change_class": injection.change_class,
                "expected": {device.id: effect_expectation(device, injection.effect)},
            }
            if not injection.registered:
                entry["expected_signal"] = EXPECTED_SIGNAL["unregistered_version"]
        elif isinstance(injection, PerformanceDrift):
            device = scenario.device(injection.device)
            entry |= {
                "device": injection.device,
                "sites": list(injection.sites) or [s.id for s in scenario.sites],
                "expected": {device.id: effect_expectation(device, injection.effect)},
            }
        elif isinstance(injection, SiteSilence):
            entry["site"] = injection.site
            entry["silenced_streams"] = {
                key: {"cases": tally.cases, "last_case_time": _time(tally.last_time)}
                for key, tally in sorted(streams.items())
                if key.split("|")[2] == injection.site
            }
        elif isinstance(injection, MalformedBurst):
            defects = Counter(
                r.defect
                for r in records
                if isinstance(r, MalformedRecord) and r.injection == injection.name
            )
            entry |= {
                "site": injection.site,
                "topic": injection.topic,
                "count": sum(defects.values()),
                "defects": dict(sorted(defects.items())),
            }
        elif isinstance(injection, MalformedBatch):
            batches = [
                r
                for r in records
                if isinstance(r, MalformedBatchRecord) and r.injection == injection.name
            ]
            entry |= {
                "site": injection.site,
                "batches": [
                    {
                        "good_events": 2 * len(batch.cases),
                        "bad_events": [
                            {
                                "index": bad.index,
                                "defect": bad.defect,
                                "expected_reason": bad.expected_reason,
                            }
                            for bad in batch.bad
                        ],
                    }
                    for batch in batches
                ],
            }
        elif isinstance(injection, Backfill):
            entry |= {
                "site": injection.site,
                "device": injection.device,
                "window": [
                    (scenario.start + timedelta(days=injection.from_day)).isoformat(),
                    (scenario.start + timedelta(days=injection.to_day)).isoformat(),
                ],
                "cases": sum(t.cases for (n, _), t in changes.items() if n == injection.name),
            }
        entry.setdefault("expected_signal", EXPECTED_SIGNAL[injection.kind])
        entries.append(entry)
    return entries


def ground_truth(scenario: Scenario, records: list[SimulatedRecord]) -> dict[str, Any]:
    """The whole ground-truth document of one run (JSON-ready, deterministic)."""
    streams, changes = tally_streams(records)
    for injection in scenario.injections:
        if isinstance(injection, SiteSilence):  # silence leaves no case to tag
            for key, tally in streams.items():
                if key.split("|")[2] == injection.site:
                    tally.injections.add(injection.name)
    kinds = Counter(type(r).__name__ for r in records)
    batches = [r for r in records if isinstance(r, MalformedBatchRecord)]
    performance = fleet_performance(scenario)
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "start": scenario.start.isoformat(),
        "days": scenario.days,
        "end": (scenario.start + timedelta(days=scenario.days)).isoformat(),
        "counts": {
            "predictions": kinds[SimulatedCase.__name__] + sum(len(b.cases) for b in batches),
            "followups": kinds[SimulatedFollowUp.__name__] + sum(len(b.followups) for b in batches),
            "malformed": kinds[MalformedRecord.__name__] + sum(len(b.bad) for b in batches),
            "registry_entries": len(registry_entries(scenario)),
        },
        "operating_points": {
            device.id: {
                "threshold": round(device_operating_point(device).threshold, 6),
                "beta_a": device_operating_point(device).a,
                "beta_b": device_operating_point(device).b,
                "reference_prevalence": device.reference_prevalence,
            }
            for device in scenario.devices
        },
        "fleet": {
            "heterogeneity": scenario.fleet.heterogeneity,
            "ci_coverage": scenario.fleet.ci_coverage,
            "prevalence_range": list(scenario.fleet.prevalence_range),
        },
        "site_performance": {
            site.id: {
                device_id: performance[site.id, device_id].as_json()
                for device_id in sorted(site.daily_cases)
            }
            for site in scenario.sites
        },
        "streams": [
            {
                "stream_key": key,
                "true_performance": _true_performance(scenario, performance, key),
                "cases": tally.cases,
                "first_case_time": _time(tally.first_time),
                "last_case_time": _time(tally.last_time),
                "study_designs": sorted(tally.designs),
                "injections": sorted(tally.injections),
                "realised": tally.realised(),
            }
            for key, tally in sorted(streams.items())
        ],
        "injections": injection_truth(scenario, records, streams, changes),
    }


def _true_performance(
    scenario: Scenario, performance: dict[tuple[str, str], SitePerformance], key: str
) -> dict[str, object]:
    """The stream's site's own true performance, before any injected change."""
    device_id, _, site_id, _ = key.split("|")
    known = performance.get((site_id, device_id))
    if known is None:  # a backfill of a device outside the site's live case mix
        known = site_performance(scenario, scenario.site(site_id), scenario.device(device_id))
    return known.as_json()


def write_ground_truth(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
