"""A heterogeneous fleet: each site's own true performance inside the registered CI, its own
prevalence, verification-biased follow-up, and performance drifts with nothing to show."""

from __future__ import annotations

import random
from statistics import median

import pytest
from scipy.stats import binomtest

from launcher.demo import demo_plan
from simulator.fleet import SimulatedCase, SimulatedFollowUp
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth
from simulator.heterogeneity import drawn_rate, fleet_performance, synthetic_sites
from simulator.monitor_replay import MonitorReplay
from simulator.scenario import Fleet, PerformanceDrift, Scenario, TruePerformance
from streams.monitor_policy import MonitorPolicy

CONFIDENCE = 0.999


def drawn_fleet(demo_scenario: Scenario, sites: int, seed: int = 11) -> Scenario:
    return demo_scenario.model_copy(
        update={
            "seed": seed,
            "days": 30,
            "sites": synthetic_sites(seed, sites, demo_scenario.devices),
            "injections": (),
            "fleet": Fleet(heterogeneity="registered_ci"),
        }
    )


def within_sampling_error(successes: int, trials: int, expected: float) -> bool:
    interval = binomtest(successes, trials).proportion_ci(CONFIDENCE, method="exact")
    return bool(interval.low <= expected <= interval.high)


def test_every_drawn_site_performs_within_the_registered_ci(demo_scenario: Scenario) -> None:
    fleet = drawn_fleet(demo_scenario, 200)
    for (_, device_id), performance in fleet_performance(fleet).items():
        device = fleet.device(device_id)
        assert performance.basis == "drawn"
        assert device.sensitivity.ci_lower <= performance.sensitivity <= device.sensitivity.ci_upper
        assert device.specificity.ci_lower <= performance.specificity <= device.specificity.ci_upper


def test_the_same_seed_gives_the_same_fleet(demo_scenario: Scenario) -> None:
    assert fleet_performance(drawn_fleet(demo_scenario, 20)) == fleet_performance(
        drawn_fleet(demo_scenario, 20)
    )
    assert fleet_performance(drawn_fleet(demo_scenario, 20)) != fleet_performance(
        drawn_fleet(demo_scenario, 20, seed=12)
    )


def test_adding_a_site_leaves_the_other_sites_draws_unchanged(demo_scenario: Scenario) -> None:
    smaller = fleet_performance(drawn_fleet(demo_scenario, 20))
    larger = fleet_performance(drawn_fleet(demo_scenario, 21))
    assert {key: larger[key] for key in smaller} == smaller


def test_drawn_rates_have_the_point_estimate_as_median(demo_scenario: Scenario) -> None:
    rng = random.Random(5)  # noqa: S311 - simulation
    claim = demo_scenario.device("dr-screen").sensitivity
    assert median(drawn_rate(rng, claim, 0.95) for _ in range(4000)) == pytest.approx(
        claim.value, abs=0.004
    )


def test_without_heterogeneity_every_site_runs_at_the_point_estimates(
    small_scenario: Scenario,
) -> None:
    for (_, device_id), performance in fleet_performance(small_scenario).items():
        device = small_scenario.device(device_id)
        assert performance.basis == "registered"
        assert (performance.sensitivity, performance.specificity) == (
            device.sensitivity.value,
            device.specificity.value,
        )
        assert performance.positive_shift == performance.negative_shift == 0.0


def test_a_site_without_its_own_prevalence_draws_one_in_the_fleet_range(
    demo_scenario: Scenario,
) -> None:
    low, high = Fleet().prevalence_range
    prevalences = [p.prevalence for p in fleet_performance(drawn_fleet(demo_scenario, 50)).values()]
    assert all(low <= p <= high for p in prevalences)
    assert len(set(prevalences)) > 40


def one_busy_site(demo_scenario: Scenario, **site_update: object) -> Scenario:
    site = demo_scenario.site("site-a").model_copy(
        update={"daily_cases": {"dr-screen": 150.0}, **site_update}
    )
    return demo_scenario.model_copy(update={"days": 80, "sites": (site,), "injections": ()})


def test_a_pinned_site_realises_its_own_sensitivity(demo_scenario: Scenario) -> None:
    pinned = {"dr-screen": TruePerformance(sensitivity=0.83, specificity=0.92)}
    records = fleet_records(one_busy_site(demo_scenario, true_performance=pinned))
    positives = [r for r in records if isinstance(r, SimulatedCase) and r.label == "positive"]
    detected = sum(case.decision == "positive" for case in positives)
    assert within_sampling_error(detected, len(positives), 0.83)


def test_positives_are_followed_up_more_often_than_negatives(demo_scenario: Scenario) -> None:
    records = fleet_records(one_busy_site(demo_scenario))
    truth_model = demo_scenario.device("dr-screen").ground_truth
    assert truth_model.completeness_of(True) > truth_model.completeness_of(False)
    read = {r.study_uid for r in records if isinstance(r, SimulatedFollowUp)}
    settled = [r for r in records if isinstance(r, SimulatedCase) and r.day < 20]
    for positive in (True, False):
        cases = [c for c in settled if (c.label == "positive") == positive]
        # a lost case still gets a single read half the time (partial follow-up)
        lost = 1.0 - truth_model.completeness_of(positive)
        expected = 1.0 - lost / 2.0
        assert within_sampling_error(sum(c.study_uid in read for c in cases), len(cases), expected)


def test_a_drift_reaches_its_target_at_a_site_of_any_performance(
    demo_scenario: Scenario,
) -> None:
    pinned = {"dr-screen": TruePerformance(sensitivity=0.91, specificity=0.90)}
    scenario = one_busy_site(demo_scenario, true_performance=pinned)
    drift = PerformanceDrift.model_validate(
        {
            "kind": "performance_drift",
            "name": "drift",
            "day": 40,
            "device": "dr-screen",
            "effect": {"sensitivity": 0.70},
        }
    )
    records = fleet_records(scenario.model_copy(update={"injections": (drift,)}))
    after = [
        r for r in records if isinstance(r, SimulatedCase) and r.label == "positive" and r.day >= 40
    ]
    assert all(case.injections == ("drift",) for case in after)
    detected = sum(case.decision == "positive" for case in after)
    assert within_sampling_error(detected, len(after), 0.70)


def test_the_ground_truth_records_each_sites_drawn_performance(demo_scenario: Scenario) -> None:
    scenario = demo_scenario.model_copy(update={"days": 3})
    truth = ground_truth(scenario, fleet_records(scenario))
    drawn = fleet_performance(scenario)
    for stream in truth["streams"]:
        device_id, _, site_id, _ = stream["stream_key"].split("|")
        assert stream["true_performance"] == drawn[site_id, device_id].as_json()
    assert truth["site_performance"]["site-a"]["dr-screen"]["basis"] == "drawn"


def test_the_demo_fleets_untouched_streams_raise_no_alarm(demo_scenario: Scenario) -> None:
    """What the demo's scoring counts as false alarms, from the monitors alone (no Kafka):
    the demo's own plan, every record in arrival order through each stream's monitor."""
    records = fleet_records(demo_scenario)
    truth = ground_truth(demo_scenario, records)
    completeness = {d.id: d.ground_truth.completeness for d in demo_scenario.devices}
    replay = MonitorReplay(demo_scenario, MonitorPolicy(**demo_plan(truth, completeness)))
    replay.feed(records)
    touched = {stream["stream_key"] for stream in truth["streams"] if stream["injections"]}
    assert replay.alarms  # the injected changes are seen
    assert [a for a in replay.alarms if a.stream_key not in touched] == []
