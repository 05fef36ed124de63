"""The simulated fleet has the operating characteristics its scenario states.

Rates are checked with exact (Clopper-Pearson) 99.9 % intervals, so each check fails by
chance about once in a thousand seeds; the seeds are fixed, so the tests are stable.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betainc
from scipy.stats import binomtest

from simulator.calibration import class_shift, operating_point, regularized_beta
from simulator.fleet import SimulatedCase, SimulatedFollowUp
from simulator.fleet_records import fleet_records
from simulator.scenario import Scenario

CONFIDENCE = 0.999
DAYS = 100
SETTLED_DAYS = DAYS - 60
"""Cases of these first days have every read they will get (reads take up to 60 days)."""


def within_sampling_error(successes: int, trials: int, expected: float) -> bool:
    interval = binomtest(successes, trials).proportion_ci(CONFIDENCE, method="exact")
    return bool(interval.low <= expected <= interval.high)


def large_dr_fleet(demo_scenario: Scenario, *, injections: bool = False) -> Scenario:
    """One busy DR site from the demo scenario: 120 cases a day for 100 days."""
    site = demo_scenario.site("site-a").model_copy(update={"daily_cases": {"dr-screen": 120.0}})
    return demo_scenario.model_copy(
        update={
            "days": DAYS,
            "sites": (site,),
            "injections": tuple(
                i for i in demo_scenario.injections if injections and i.kind == "scanner_change"
            ),
        }
    )


@pytest.fixture(scope="module")
def dr_cases(demo_scenario: Scenario) -> list[SimulatedCase]:
    records = fleet_records(large_dr_fleet(demo_scenario))
    return [r for r in records if isinstance(r, SimulatedCase)]


@pytest.fixture(scope="module")
def dr_followups(demo_scenario: Scenario) -> list[SimulatedFollowUp]:
    """Reads of the settled cases only."""
    records = fleet_records(large_dr_fleet(demo_scenario))
    settled = {
        r.study_uid for r in records if isinstance(r, SimulatedCase) and r.day < SETTLED_DAYS
    }
    return [r for r in records if isinstance(r, SimulatedFollowUp) and r.study_uid in settled]


def rate(cases: list[SimulatedCase], label: str, decision: str) -> tuple[int, int]:
    of_label = [c for c in cases if c.label == label]
    return sum(c.decision == decision for c in of_label), len(of_label)


def test_sensitivity_matches_the_claim(dr_cases: list[SimulatedCase]) -> None:
    detected, positives = rate(dr_cases, "positive", "positive")
    assert positives > 2500
    assert within_sampling_error(detected, positives, 0.872)


def test_specificity_matches_the_claim(dr_cases: list[SimulatedCase]) -> None:
    cleared, negatives = rate(dr_cases, "negative", "negative")
    assert within_sampling_error(cleared, negatives, 0.907)


def test_prevalence_matches_the_site(dr_cases: list[SimulatedCase]) -> None:
    positives = sum(c.label == "positive" for c in dr_cases)
    assert within_sampling_error(positives, len(dr_cases), 0.24)


def test_daily_volume_matches_the_site(dr_cases: list[SimulatedCase]) -> None:
    per_day = len(dr_cases) / DAYS
    assert abs(per_day - 120) < 4 * (120 / DAYS) ** 0.5


def test_scores_are_calibrated_at_the_reference_prevalence(
    dr_cases: list[SimulatedCase],
) -> None:
    bins: dict[int, list[SimulatedCase]] = defaultdict(list)
    for case in dr_cases:
        bins[min(int(case.score * 5), 4)].append(case)
    for members in bins.values():
        mean_score = sum(c.score for c in members) / len(members)
        positives = sum(c.label == "positive" for c in members)
        # A bin's scores spread, so allow the spread of its mean beside the binomial CI.
        interval = binomtest(positives, len(members)).proportion_ci(CONFIDENCE)
        assert interval.low - 0.02 <= mean_score <= interval.high + 0.02


def test_two_blinded_readers_disagree_as_often_as_their_accuracy_implies(
    dr_cases: list[SimulatedCase], dr_followups: list[SimulatedFollowUp]
) -> None:
    truth = {c.study_uid: c.label for c in dr_cases}
    reads: dict[str, dict[str, str]] = defaultdict(dict)
    for read in dr_followups:
        assert read.read_round is not None
        reads[read.study_uid][read.read_round] = read.label
    double = {uid: r for uid, r in reads.items() if "second" in r}
    assert all("first" in r for r in double.values())
    disagreements = sum(r["first"] != r["second"] for r in double.values())
    prevalence = sum(truth[uid] == "positive" for uid in double) / len(double)
    sensitivity, specificity = 0.93, 0.96
    expected = prevalence * 2 * sensitivity * (1 - sensitivity) + (1 - prevalence) * 2 * (
        specificity * (1 - specificity)
    )
    assert within_sampling_error(disagreements, len(double), expected)


def test_every_disagreement_and_only_a_disagreement_is_adjudicated(
    dr_followups: list[SimulatedFollowUp],
) -> None:
    rounds: dict[str, dict[str, SimulatedFollowUp]] = defaultdict(dict)
    for read in dr_followups:
        assert read.read_round is not None
        rounds[read.study_uid][read.read_round] = read
    for reads in rounds.values():
        disagree = "second" in reads and reads["first"].label != reads["second"].label
        assert ("adjudication" in reads) == disagree
        readers = {r.reader_id for r in reads.values()}
        assert len(readers) == len(reads)  # blinded reads by different readers


def test_adjudication_comes_after_both_reads(dr_followups: list[SimulatedFollowUp]) -> None:
    by_case: dict[str, dict[str, datetime]] = defaultdict(dict)
    for read in dr_followups:
        assert read.read_round is not None
        by_case[read.study_uid][read.read_round] = read.event_time
    for times in by_case.values():
        if "adjudication" in times:
            assert times["adjudication"] >= max(times["first"], times["second"])


def test_follow_up_is_incomplete_at_the_stated_rate(
    dr_cases: list[SimulatedCase], dr_followups: list[SimulatedFollowUp], demo_scenario: Scenario
) -> None:
    doubly_read = {f.study_uid for f in dr_followups if f.read_round == "second"}
    early = [c for c in dr_cases if c.day < SETTLED_DAYS]
    complete = sum(c.study_uid in doubly_read for c in early)
    completeness = demo_scenario.device("dr-screen").ground_truth.completeness
    assert within_sampling_error(complete, len(early), completeness)


def test_follow_up_delays_stay_within_the_stated_maximum(
    dr_cases: list[SimulatedCase], dr_followups: list[SimulatedFollowUp]
) -> None:
    case_time = {c.study_uid: c.event_time for c in dr_cases}
    delays = [(f.event_time - case_time[f.study_uid]).total_seconds() for f in dr_followups]
    assert min(delays) >= 0
    assert max(delays) <= (30 + 30) * 86_400  # two reads, then adjudication


def test_a_new_scanner_drops_sensitivity_to_its_target(demo_scenario: Scenario) -> None:
    records = fleet_records(large_dr_fleet(demo_scenario, injections=True))
    on_new_camera = [
        r for r in records if isinstance(r, SimulatedCase) and "new-camera-site-a" in r.injections
    ]
    assert {c.scanner.model for c in on_new_camera} == {"Aurora"}
    detected, positives = rate(on_new_camera, "positive", "positive")
    assert within_sampling_error(detected, positives, 0.55)


def test_operating_point_reaches_the_claimed_pair() -> None:
    point = operating_point(0.872, 0.907, 0.24)
    assert point.sensitivity() == pytest.approx(0.872, abs=1e-6)
    assert point.specificity() == pytest.approx(0.907, abs=1e-6)
    assert point.reference_prevalence == pytest.approx(0.24)


def test_a_class_shift_reaches_its_target_rate() -> None:
    point = operating_point(0.90, 0.85, 0.2)
    assert point.sensitivity(class_shift(point, True, 0.7)) == pytest.approx(0.7, abs=1e-6)
    assert point.specificity(class_shift(point, False, 0.95)) == pytest.approx(0.95, abs=1e-6)


def test_an_uninformative_claim_is_refused() -> None:
    with pytest.raises(ValueError, match="exceed 1"):
        operating_point(0.5, 0.4, 0.2)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(0.0, 1.0),
    a=st.floats(0.05, 50.0),
    b=st.floats(0.05, 50.0),
)
def test_regularized_beta_agrees_with_scipy(x: float, a: float, b: float) -> None:
    assert regularized_beta(x, a, b) == pytest.approx(float(betainc(a, b, x)), abs=1e-9)


def cases_at_prevalence(
    demo_scenario: Scenario, prevalence: float, site_calibration: bool
) -> list[SimulatedCase]:
    device = demo_scenario.device("dr-screen").model_copy(
        update={"site_calibration": site_calibration}
    )
    site = demo_scenario.site("site-a").model_copy(
        update={"daily_cases": {"dr-screen": 200.0}, "prevalence": {"dr-screen": prevalence}}
    )
    scenario = demo_scenario.model_copy(
        update={"days": 30, "devices": (device,), "sites": (site,), "injections": ()}
    )
    return [r for r in fleet_records(scenario) if isinstance(r, SimulatedCase)]


def calibration_in_the_large(cases: list[SimulatedCase]) -> tuple[float, int, int]:
    """Mean score, positives and cases."""
    positives = sum(c.label == "positive" for c in cases)
    return sum(c.score for c in cases) / len(cases), positives, len(cases)


def test_a_site_with_another_prevalence_is_miscalibrated_by_default(
    demo_scenario: Scenario,
) -> None:
    mean_score, positives, total = calibration_in_the_large(
        cases_at_prevalence(demo_scenario, 0.40, site_calibration=False)
    )
    assert not within_sampling_error(positives, total, mean_score)


def test_site_calibration_fits_the_site_and_keeps_the_claimed_rates(
    demo_scenario: Scenario,
) -> None:
    cases = cases_at_prevalence(demo_scenario, 0.40, site_calibration=True)
    mean_score, positives, total = calibration_in_the_large(cases)
    assert within_sampling_error(positives, total, mean_score)
    assert within_sampling_error(*rate(cases, "positive", "positive"), 0.872)
    assert within_sampling_error(*rate(cases, "negative", "negative"), 0.907)
    reference_threshold = operating_point(0.872, 0.907, 0.24).threshold
    assert all(c.operating_threshold > reference_threshold for c in cases)  # moved up with p
