"""False alarms of a heterogeneous in-control fleet, and detection delays, through the
project's own stream monitors (not a test).

In control: ``--sites`` synthetic hospitals (:func:`simulator.heterogeneity.synthetic_sites`:
log-normal volumes around 20 cases a day, one to three cameras or CT scanners each, every
site screening for referable DR and half of them also reading lung-nodule CT), the demo's
two devices, claims and follow-up (verification bias, label delays of days for DR and
months for CT), each site's true sensitivity and specificity drawn inside the registered
95 % CI and its prevalence in 0.15-0.35 (``[fleet] heterogeneity = "registered_ci"``), over
``--days`` simulated days with no injected change. Every record goes in arrival order
through each stream's :class:`streams.stream_monitor.StreamMonitor`, designed from the
registration as the worker designs it (:class:`simulator.monitor_replay.MonitorReplay`:
predictions when they arrive, outcomes when the follow-up that settles them arrives), under
the surveillance plan a manufacturer would fix for this fleet (:func:`fleet_plan`): a budget
of ``--budget-per-stream-year`` false alarms a year per stream, shared by every test in its
own units, for streams of the fleet's mean volume and follow-up.

Every alarm there is a false alarm. Per detector, the observed count is set against the
budget its own settings imply at its charted volume: a chart with in-control ARL ``A`` (in
its own units: positives, negatives, outcomes or predictions, read from the detector
object) that charted ``v`` of them raises ``v / A`` in expectation; a claims test (no ARL:
it rejects at most once a surveillance year, with probability at most ``alpha``) at most
``alpha`` per stream-year. That budget holds at the acceptable level (the claim's lower
bound); every simulated site is at or above it, so the count should not exceed the
budget's 95 % Poisson interval, and may fall well below it. The labelled sensitivity and
specificity charts are multi-chart CUSUMs whose ``arl0`` is the Bonferroni bound over their
CUSUMs' exact ARLs (:mod:`detectors.bernoulli_multi_cusum`): their budget is an upper bound
on the expected count, and the same bound at each site's own drawn rate is given too
(Markov chain, :func:`detectors.bernoulli_cusum_arl`). A detector whose ARL0 is unknown is
listed with its count and "-".

``--boundary``: every site pinned at its acceptable levels (each device's claimed lower
confidence bounds), where the labelled charts' guarantee is tight; the in-control fleet
only (no changed sites), written to fleet_false_alarms_boundary.json.

Changes: ``--changed-sites`` further DR-only sites per change, in control until
``--change-day``, then (:class:`simulator.scenario.PerformanceDrift`: no new version or
scanner to show for it) sensitivity 0.74, sensitivity 0.70, or every score moved down by
0.6 on the logit scale. Per detector: the share of sites alarmed after the change, the
median delay in case time (change to the case it fired on) and to the alarm (change to the
arrival of the record it fired on: for a labelled detector the wait for the label is in it),
and the lead of the first label-free alarm over the first labelled one.

Runtime: about 7 minutes on 2 cores with the defaults (``--quick``: 20 sites, 120 days,
seconds). Writes bench/results/fleet_false_alarms.json and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scipy.stats import poisson

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from detectors import BernoulliMultiCUSUM, bernoulli_cusum_arl  # noqa: E402
from simulator.fleet import SimulatedCase  # noqa: E402
from simulator.fleet_records import fleet_records  # noqa: E402
from simulator.ground_truth import stream_key  # noqa: E402
from simulator.heterogeneity import site_performance, synthetic_sites  # noqa: E402
from simulator.monitor_replay import MonitorReplay  # noqa: E402
from simulator.scenario import (  # noqa: E402
    Effect,
    Fleet,
    PerformanceDrift,
    Scenario,
    TruePerformance,
    load_scenario,
)
from streams.detector_design import is_label_free  # noqa: E402
from streams.monitor_policy import MonitorPolicy  # noqa: E402
from streams.stream_monitor import StreamMonitor  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SEED = 20260601
CHANGES: dict[str, Effect] = {
    "sensitivity_0.74": Effect(sensitivity=0.74),
    "sensitivity_0.70": Effect(sensitivity=0.70),
    "score_shift_-0.6": Effect(score_shift=-0.6),
}
YEAR_DAYS = 365.0
PREVALENCE_BANDS = ((0.0, 0.03), (0.03, 0.06), (0.06, 0.10), (0.10, 1.0))
"""Bands of a site's distance (either way) from the prevalence the scores are calibrated
at, for the calibration test's alarms."""
CLAIM_CHARTS = (
    "sensitivity_cusum",
    "sensitivity_claims_test",
    "specificity_cusum",
    "specificity_claims_test",
)
PERFORMANCE_LABEL_FREE = ("score_drift", "sensitivity_estimate", "specificity_estimate")
"""The label-free tests a performance change can set off (a drift leaves the acquisition
mix as it was: an acquisition-drift alarm after one is false)."""


# --- the fleets --------------------------------------------------------------------------------


def in_control_fleet(sites: int, days: int, boundary: bool = False) -> Scenario:
    """The heterogeneous in-control fleet; with ``boundary`` every site's true sensitivity and
    specificity pinned at each device's acceptable level (the claim's lower confidence bound),
    where the labelled charts' false-alarm guarantee is tight."""
    demo = load_scenario(REPOSITORY / "scenarios" / "demo.toml")
    fleet_sites = synthetic_sites(SEED, sites, demo.devices)
    if boundary:
        acceptable = {
            device.id: TruePerformance(
                sensitivity=device.sensitivity.ci_lower, specificity=device.specificity.ci_lower
            )
            for device in demo.devices
        }
        fleet_sites = tuple(
            site.model_copy(
                update={"true_performance": {d: acceptable[d] for d in site.daily_cases}}
            )
            for site in fleet_sites
        )
    return demo.model_copy(
        update={
            "name": "fleet-false-alarms-boundary" if boundary else "fleet-false-alarms",
            "seed": SEED,
            "days": days,
            "sites": fleet_sites,
            "injections": (),
            "fleet": Fleet(heterogeneity="registered_ci"),
        }
    )


def changed_fleet(sites_per_change: int, days: int, change_day: int) -> Scenario:
    demo = load_scenario(REPOSITORY / "scenarios" / "demo.toml")
    dr_screen = demo.device("dr-screen")
    sites = synthetic_sites(
        SEED + 1, sites_per_change * len(CHANGES), (dr_screen,), second_device_share=0.0
    )
    injections = [
        PerformanceDrift(
            kind="performance_drift",
            name=name,
            day=change_day,
            device=dr_screen.id,
            sites=tuple(s.id for s in sites[k * sites_per_change : (k + 1) * sites_per_change]),
            effect=effect,
        )
        for k, (name, effect) in enumerate(CHANGES.items())
    ]
    return demo.model_copy(
        update={
            "name": "fleet-changes",
            "seed": SEED + 1,
            "days": days,
            "devices": (dr_screen,),
            "sites": sites,
            "injections": tuple(injections),
            "fleet": Fleet(heterogeneity="registered_ci"),
        }
    )


# --- one site through the monitors (runs in a worker process) ----------------------------------


@dataclass
class StreamResult:
    stream_key: str
    site_id: str
    prevalence_gap: float
    """The site's true prevalence less the one the device's scores are calibrated at."""
    predictions: int
    outcomes: int
    positives: int
    negatives: int
    expected: dict[str, float | None]
    """Per detector: false alarms its settings imply at its charted volume (None: unknown)."""
    expected_at_true_rate: dict[str, float]
    """Per labelled multi-chart CUSUM: the Bonferroni bound on the expected count at the
    site's own true rate (its CUSUMs' exact ARLs there)."""


@dataclass
class SiteResult:
    site_id: str
    streams: list[StreamResult]
    alarms: list[tuple[str, str, float, float, bool]]
    """(stream key, detector, case day, raised day, label-free) of every alarm."""
    records: int
    seconds: float = 0.0
    injections: dict[str, str] = field(default_factory=dict)
    """Stream key -> the change that touched it."""


def charted_volume(name: str, monitor: StreamMonitor) -> float | None:
    """The cases a detector of ``monitor`` charted, in its own units (None: not known)."""
    positives = monitor.true_positives + monitor.false_negatives
    negatives = monitor.true_negatives + monitor.false_positives
    if is_label_free(name):
        if name.endswith("_estimate"):
            return float(monitor.predictions)
        return float(max(monitor.predictions - monitor.policy.score_reference_cases, 0))
    if name == "calibration_test":
        return float(monitor.outcomes)
    if name.startswith("sensitivity_"):
        return float(positives)
    if name.startswith("specificity_"):
        return float(negatives)
    return None


def expected_false_alarms(name: str, monitor: StreamMonitor, years: float) -> float | None:
    """What the detector's own settings imply in control over ``years`` (None: unknown)."""
    detector = monitor.detectors.get(name)
    if detector is None:
        return None
    arl0 = getattr(detector, "arl0", None)
    volume = charted_volume(name, monitor)
    if isinstance(arl0, int | float) and arl0 > 0 and volume is not None:
        return volume / float(arl0)
    alpha = getattr(detector, "alpha", None)
    if isinstance(alpha, int | float):  # rejects at most once a surveillance year
        return float(alpha) * math.ceil(years - 1e-9)
    return None


def replay_site(scenario: Scenario, site_id: str, policy: MonitorPolicy) -> SiteResult:
    started = time.perf_counter()
    site = scenario.site(site_id)
    alone = scenario.model_copy(update={"sites": (site,)})
    records = fleet_records(alone)
    replay = MonitorReplay(alone, policy)
    replay.feed(records)
    start = scenario.start

    def day(moment: datetime) -> float:
        return (moment - start) / timedelta(days=1)

    years = scenario.days / YEAR_DAYS
    streams = []
    for key, monitor in sorted(replay.monitors.items()):
        device = scenario.device(key.split("|")[0])
        truth = site_performance(scenario, site, device)
        expected = {name: expected_false_alarms(name, monitor, years) for name in monitor.detectors}
        at_true: dict[str, float] = {}
        for name, detector in monitor.detectors.items():
            if isinstance(detector, BernoulliMultiCUSUM):
                rate = truth.sensitivity if name.startswith("sensitivity") else truth.specificity
                volume = charted_volume(name, monitor) or 0.0
                at_true[name] = volume * sum(
                    1.0 / bernoulli_cusum_arl(1.0 - rate, detector.p0, p1, h, detector.resolution)
                    for p1, h in zip(detector.p1, detector.h, strict=True)
                )
        streams.append(
            StreamResult(
                key,
                site_id,
                truth.prevalence - device.reference_prevalence,
                monitor.predictions,
                monitor.outcomes,
                monitor.true_positives + monitor.false_negatives,
                monitor.true_negatives + monitor.false_positives,
                expected,
                at_true,
            )
        )
    touched = {
        stream_key(case): name
        for case in records
        if isinstance(case, SimulatedCase)
        for name in case.injections
    }
    return SiteResult(
        site_id,
        streams,
        [
            (a.stream_key, a.detector, day(a.case_time), day(a.raised_at), a.label_free)
            for a in replay.alarms
        ],
        len(records),
        time.perf_counter() - started,
        touched,
    )


def fleet_plan(scenario: Scenario, budget_per_stream_year: float) -> MonitorPolicy:
    """The surveillance plan a manufacturer would fix for this fleet in advance: its streams,
    their mean volume and follow-up, and a budget of false alarms a year for all of them."""
    devices = {device.id: device for device in scenario.devices}
    streams = [
        (device_id, daily)
        for site in scenario.sites
        for device_id, daily in site.daily_cases.items()
        if daily > 0
    ]
    predictions = sum(daily for _, daily in streams) * YEAR_DAYS
    followed = sum(
        daily * devices[device_id].ground_truth.completeness for device_id, daily in streams
    )
    return MonitorPolicy(
        fleet_false_alarms_per_year=budget_per_stream_year * len(streams),
        fleet_streams=len(streams),
        stream_predictions_per_year=predictions / len(streams),
        followup_completeness=followed / sum(daily for _, daily in streams),
    )


def replay_sites(
    scenario: Scenario, site_ids: Sequence[str], policy: MonitorPolicy
) -> list[SiteResult]:
    return [replay_site(scenario, site_id, policy) for site_id in site_ids]


def run_fleet(scenario: Scenario, policy: MonitorPolicy, processes: int) -> list[SiteResult]:
    """Every site of ``scenario`` through its monitors, on ``processes`` processes."""
    ids = [site.id for site in scenario.sites]
    chunks = [ids[k : k + 5] for k in range(0, len(ids), 5)]
    if processes <= 1:
        return [r for chunk in chunks for r in replay_sites(scenario, chunk, policy)]
    # By module name, so the workers can find it whether run directly or by bench/run.py.
    worker = importlib.import_module(Path(__file__).stem).replay_sites
    with ProcessPoolExecutor(processes) as pool:
        results = pool.map(worker, [scenario] * len(chunks), chunks, [policy] * len(chunks))
        return [r for chunk in results for r in chunk]


# --- summaries ---------------------------------------------------------------------------------


def poisson_interval(mean: float) -> tuple[int, int]:
    return int(poisson.ppf(0.025, mean)), int(poisson.ppf(0.975, mean))


def false_alarm_summary(results: list[SiteResult], days: int) -> dict[str, Any]:
    years = days / YEAR_DAYS
    observed: Counter[str] = Counter(detector for r in results for _, detector, *_ in r.alarms)
    expected: dict[str, float] = defaultdict(float)
    unknown: set[str] = set()
    at_true: dict[str, float] = defaultdict(float)
    stream_count: Counter[str] = Counter()
    for r in results:
        for stream in r.streams:
            for name, value in stream.expected.items():
                stream_count[name] += 1
                if value is None:
                    unknown.add(name)
                else:
                    expected[name] += value
            for name, value in stream.expected_at_true_rate.items():
                at_true[name] += value
    rows = []
    for name in sorted(set(stream_count) | set(observed)):
        count = observed[name]
        row: dict[str, Any] = {
            "detector": name,
            "label_free": is_label_free(name),
            "streams": stream_count[name],
            "observed": count,
            "per_stream_year": count / (stream_count[name] * years) if stream_count[name] else None,
            "streams_alarmed": len({key for r in results for key, d, *_ in r.alarms if d == name}),
        }
        if name in expected and name not in unknown:
            low, high = poisson_interval(expected[name])
            row |= {
                "expected": expected[name],
                "interval_95": [low, high],
                "not_above_budget": count <= high,
                "within_interval": low <= count <= high,
            }
        else:
            row |= {"expected": None, "interval_95": None, "not_above_budget": None}
        if name in at_true:
            low, high = poisson_interval(at_true[name])
            row |= {
                "expected_at_true_rates": at_true[name],
                "interval_95_at_true_rates": [low, high],
                "within_interval_at_true_rates": low <= count <= high,
            }
        rows.append(row)
    sites = len(results)
    total = sum(observed.values())
    gaps = {s.stream_key: abs(s.prevalence_gap) for r in results for s in r.streams}
    by_band: dict[str, dict[str, float]] = {}
    for near, far in PREVALENCE_BANDS:
        band = f"{near:.2f}-{far:.2f}"
        keys = {key for key, gap in gaps.items() if near <= gap < far}
        by_band[band] = {
            "stream_years": len(keys) * years,
            "calibration_test_alarms": sum(
                1
                for r in results
                for key, d, *_ in r.alarms
                if d == "calibration_test" and key in keys
            ),
        }
    known = [row for row in rows if row["expected"] is not None]
    return {
        "sites": sites,
        "streams": sum(len(r.streams) for r in results),
        "site_years": sites * years,
        "predictions": sum(s.predictions for r in results for s in r.streams),
        "outcomes": sum(s.outcomes for r in results for s in r.streams),
        "false_alarms": total,
        "expected_false_alarms": sum(row["expected"] for row in known),
        "expected_complete": len(known) == len(rows),
        "false_alarms_per_site_year": total / (sites * years),
        "share_of_sites_alarmed": sum(1 for r in results if r.alarms) / sites,
        "share_of_sites_alarmed_labelled": sum(
            1 for r in results if any(not free for *_, free in r.alarms)
        )
        / sites,
        "calibration_alarms_by_prevalence": by_band,
        "detectors": rows,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def delay_summary(results: list[SiteResult], change_day: int, days: int) -> list[dict[str, Any]]:
    by_change: dict[str, list[SiteResult]] = defaultdict(list)
    for r in results:
        for name in set(r.injections.values()):
            by_change[name].append(r)
    summaries = []
    for name, effect in CHANGES.items():
        sites = by_change.get(name, [])
        firsts: dict[str, list[tuple[float, float]]] = defaultdict(list)
        labelled, label_free, leads, before = [], [], [], 0
        for r in sites:
            first: dict[str, tuple[float, float]] = {}
            for _, detector, case_day, raised_day, _ in sorted(r.alarms, key=lambda a: a[3]):
                if case_day < change_day:
                    before += 1
                    continue
                first.setdefault(detector, (case_day - change_day, raised_day - change_day))
            for detector, delays in first.items():
                firsts[detector].append(delays)
            free = [d[1] for k, d in first.items() if k in PERFORMANCE_LABEL_FREE]
            labels = [d[1] for k, d in first.items() if k in CLAIM_CHARTS]
            if free:
                label_free.append(min(free))
            if labels:
                labelled.append(min(labels))
            if free and labels:
                leads.append(min(labels) - min(free))
        n = len(sites)
        summaries.append(
            {
                "change": name,
                "effect": effect.model_dump(exclude_none=True),
                "sites": n,
                "alarms_before_change": before,
                "days_observed_after_change": days - change_day,
                "detectors": [
                    {
                        "detector": detector,
                        "label_free": is_label_free(detector),
                        "share_detected": len(delays) / n,
                        "median_case_days": _median([d[0] for d in delays]),
                        "median_days_to_alarm": _median([d[1] for d in delays]),
                    }
                    for detector, delays in sorted(firsts.items())
                ],
                "labelled": {
                    "share_detected": len(labelled) / n if n else 0.0,
                    "median_days_to_alarm": _median(labelled),
                },
                "label_free": {
                    "share_detected": len(label_free) / n if n else 0.0,
                    "median_days_to_alarm": _median(label_free),
                },
                "lead_of_label_free_days": {
                    "sites_with_both": len(leads),
                    "median": _median(leads),
                    "share_label_free_first": sum(1 for x in leads if x > 0) / len(leads)
                    if leads
                    else None,
                },
            }
        )
    return summaries


# --- output ------------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    fleet = report["in_control"]
    lines = [
        f"# Fleet false alarms: {fleet['sites']} in-control sites, {report['days']} days",
        "",
        f"{fleet['streams']} streams, {fleet['predictions']:,} predictions, "
        f"{fleet['outcomes']:,} outcomes; {report['policy']}. "
        f"{fleet['false_alarms']} false alarms ({fleet['false_alarms_per_site_year']:.2f} per "
        f"site-year) against {fleet['expected_false_alarms']:.1f} budgeted; "
        f"{fleet['share_of_sites_alarmed']:.0%} of sites alarmed at least once "
        f"({fleet['share_of_sites_alarmed_labelled']:.0%} by a labelled detector).",
        "",
        "| detector | observed | per stream-year | budget (95 % interval) | not above | "
        "at drawn rates (95 %) | streams alarmed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in fleet["detectors"]:
        budget = (
            f"{row['expected']:.1f} ({row['interval_95'][0]}-{row['interval_95'][1]})"
            if row["expected"] is not None
            else "-"
        )
        true_rate = (
            f"{row['expected_at_true_rates']:.1f} ({row['interval_95_at_true_rates'][0]}-"
            f"{row['interval_95_at_true_rates'][1]})"
            if "expected_at_true_rates" in row
            else "-"
        )
        verdict = {True: "yes", False: "**no**", None: "-"}[row["not_above_budget"]]
        lines.append(
            f"| {row['detector']} | {row['observed']} | {_number(row['per_stream_year'], 3)} "
            f"| {budget} | {verdict} | {true_rate} | {row['streams_alarmed']} |"
        )
    if report["changes"]:
        lines += [
            "",
            f"## Detection delay (change at day {report['change_day']}, "
            f"{report['changes_days'] - report['change_day']} days after it)",
            "",
            "| change | sites | detector | detected | median days, case time "
            "| median days to alarm |",
            "|---|---|---|---|---|---|",
        ]
    for change in report["changes"]:
        rows = [
            ("first claim chart (CUSUM, claims test)", change["labelled"], None),
            ("first label-free (score drift, estimate)", change["label_free"], None),
        ]
        for group, summary, _ in rows:
            lines.append(
                f"| {change['change']} | {change['sites']} | **{group}** | "
                f"{summary['share_detected']:.0%} | - | "
                f"{_number(summary['median_days_to_alarm'])} |"
            )
        for row in change["detectors"]:
            lines.append(
                f"| {change['change']} | {change['sites']} | {row['detector']} | "
                f"{row['share_detected']:.0%} | {_number(row['median_case_days'])} | "
                f"{_number(row['median_days_to_alarm'])} |"
            )
        lead = change["lead_of_label_free_days"]
        lines.append(
            f"| {change['change']} | {change['sites']} | lead of label-free over labelled | "
            f"{lead['sites_with_both']} sites with both | - | {_number(lead['median'])} |"
        )
    bands = ", ".join(
        f"{band}: {v['calibration_test_alarms']} in {v['stream_years']:.0f} stream-years"
        for band, v in fleet["calibration_alarms_by_prevalence"].items()
    )
    lines += [
        "",
        f"Calibration-test false alarms by the site's distance from the calibration "
        f"prevalence: {bands}.",
        "",
        f"Runtime {report['runtime_s']:.0f} s on {report['processes']} processes.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--changed-sites", type=int, default=20, help="sites per change")
    parser.add_argument("--change-day", type=int, default=120)
    parser.add_argument("--changes-days", type=int, default=240)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--budget-per-stream-year",
        type=float,
        default=0.2,
        help="the plan's budget: expected false alarms a year per planned stream",
    )
    parser.add_argument("--quick", action="store_true", help="20 sites, 120 days: a smoke run")
    parser.add_argument(
        "--boundary",
        action="store_true",
        help="every site pinned at its acceptable levels (the guarantee's boundary); the "
        "in-control fleet only, to fleet_false_alarms_boundary.json",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.json is None:
        name = "fleet_false_alarms_boundary" if args.boundary else "fleet_false_alarms"
        args.json = RESULTS / f"{name}.json"
    if args.quick:
        args.sites, args.days, args.changed_sites = 20, 120, 4
        args.change_day, args.changes_days = 60, 120
    started = time.perf_counter()
    fleet = in_control_fleet(args.sites, args.days, args.boundary)
    policy = fleet_plan(fleet, args.budget_per_stream_year)
    in_control = run_fleet(fleet, policy, args.processes)
    changed: list[SiteResult] = []
    if not args.boundary:
        changes = changed_fleet(args.changed_sites, args.changes_days, args.change_day)
        # The changed sites run under the same plan: the same thresholds as the fleet's.
        changed = run_fleet(changes, policy, args.processes)
    report = {
        "benchmark": "fleet_false_alarms",
        "quick": args.quick,
        "boundary": args.boundary,
        "days": args.days,
        "change_day": args.change_day,
        "changes_days": args.changes_days,
        "processes": args.processes,
        "policy": (
            f"fleet budget {policy.fleet_false_alarms_per_year:.1f} a year among "
            f"{policy.fleet_streams} planned streams of "
            f"{policy.stream_predictions_per_year:,.0f} predictions a year, follow-up "
            f"{policy.followup_completeness:.2f}"
        ),
        "budget_per_year": policy.fleet_false_alarms_per_year,
        "in_control": false_alarm_summary(in_control, args.days),
        "changes": (
            [] if args.boundary else delay_summary(changed, args.change_day, args.changes_days)
        ),
        "records": sum(r.records for r in in_control + changed),
        "runtime_s": time.perf_counter() - started,
        "python": platform.python_version(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    args.json.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return report


if __name__ == "__main__":
    main()
