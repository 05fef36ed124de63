"""The pooled per-version stage's pure parts: counts that are always the sum of each site's
latest cumulative tally, tests that equal the detectors run on the summed counts, a state
that round-trips through JSON and refuses what it cannot trust, and the alert it raises."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import BetaBinomialConfidenceSequence, StateError
from postmarket.contracts import Alert, StreamKey, VersionTally, decode, encode, version_key
from streams.detector_design import design_detectors
from streams.monitor_policy import MonitorPolicy
from streams.pooled import (
    POOLED_SITE,
    PooledMonitor,
    pooled_name,
    tally_of_labelled_state,
    version_tally,
)
from streams.pooled_alerts import group_stream, pooled_alert
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CLAIMS: dict[Any, float] = {"sensitivity": 0.872, "specificity": 0.907}
LOWER: dict[Any, float] = {"sensitivity": 0.818, "specificity": 0.877}
POLICY = MonitorPolicy(arl0_cases=20_000)


def stream(site: str) -> StreamKey:
    return StreamKey(device_id="dr", device_version="2.2.0.0", site_id=site, task="referable_dr")


def tally(site: str, counts: tuple[int, int, int, int], day: float = 0.0) -> VersionTally:
    made = version_tally(stream(site), counts, T0, T0 + timedelta(days=day))
    assert made is not None
    return made


def site_histories(rng: random.Random, sites: int, steps: int) -> dict[str, list[VersionTally]]:
    """Each site's cumulative tallies over time: counts that only grow."""
    histories: dict[str, list[VersionTally]] = {}
    for index in range(sites):
        site, counts = f"site-{index}", [0, 0, 0, 0]
        histories[site] = []
        for step in range(steps):
            counts = [c + rng.randint(0, 4) for c in counts]
            if sum(counts) == 0:
                counts[0] = 1
            histories[site].append(tally(site, (counts[0], counts[1], counts[2], counts[3]), step))
    return histories


def delivered(rng: random.Random, histories: dict[str, list[VersionTally]]) -> list[VersionTally]:
    """Every tally at least once, some several times (re-sends), in a shuffled order."""
    sent = [t for history in histories.values() for t in history]
    sent += rng.choices(sent, k=len(sent) // 2)
    rng.shuffle(sent)
    return sent


def latest_sum(histories: dict[str, list[VersionTally]]) -> tuple[int, ...]:
    latest = [history[-1].counts for history in histories.values()]
    return tuple(sum(cells) for cells in zip(*latest, strict=True))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sites=st.integers(1, 6), steps=st.integers(1, 8))
def test_pooled_counts_are_the_sum_of_each_sites_latest_tally_whatever_the_delivery(
    seed: int, sites: int, steps: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - seeded test data
    histories = site_histories(rng, sites, steps)
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    for sent in delivered(rng, histories):
        pooled.observe(sent)
    assert pooled.counts.totals() == latest_sum(histories)
    assert pooled.outcomes == sum(h[-1].sequence for h in histories.values())


def test_a_tally_sent_again_counts_nothing_and_raises_nothing() -> None:
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    first = tally("site-a", (5, 3, 9, 1))
    pooled.observe(first)
    before = json.dumps(pooled.to_state(), sort_keys=True)
    assert pooled.already_counted(first)
    assert pooled.observe(first) == []
    assert pooled.observe(tally("site-a", (2, 1, 3, 0))) == []  # older, read late
    assert json.dumps(pooled.to_state(), sort_keys=True) == before


def test_a_newer_tally_with_fewer_of_a_count_is_refused_and_changes_nothing() -> None:
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    pooled.observe(tally("site-a", (5, 3, 9, 1)))
    before = pooled.to_state()
    with pytest.raises(ValueError, match="not cumulative"):
        pooled.observe(tally("site-a", (4, 5, 9, 1)))
    assert pooled.to_state() == before


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pooled_claims_test_equals_the_detector_run_on_the_summed_counts(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - seeded test data
    histories = site_histories(rng, 4, 6)
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    for sent in delivered(rng, histories):
        pooled.observe(sent)
    tp, fn, tn, fp = latest_sum(histories)
    for metric, cases, events in (("sensitivity", tp + fn, fn), ("specificity", tn + fp, fp)):
        direct = BetaBinomialConfidenceSequence(1.0 - LOWER[metric], alternative="greater")
        result = None
        for adverse in [1] * events + [0] * (cases - events):
            result = direct.update(adverse)
        assert result is not None
        statistic, threshold = pooled.statistics[pooled_name(metric, "claims_test")]
        assert statistic == pytest.approx(result.statistic, abs=1e-9)
        assert threshold == pytest.approx(result.threshold)


def test_the_pooled_tests_are_the_site_streams_levels_with_a_budget_share() -> None:
    policy = MonitorPolicy(
        fleet_false_alarms_per_year=10.0, fleet_streams=100, fleet_pooled_groups=10
    )
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, policy)
    site = StreamMonitor.for_claims(CLAIMS, policy, None, LOWER)
    assert pooled.levels == site.levels
    pooled_chart = pooled.detectors[pooled_name("sensitivity", "cusum")]
    site_chart = site.detectors["sensitivity_cusum"]
    assert pooled_chart.settings()["p0"] == site_chart.settings()["p0"]
    # ten sites' cases per pooled chart: a higher threshold for the same false-alarm part
    assert min(pooled_chart.settings()["h"]) > min(site_chart.settings()["h"])
    assert pooled.expected_false_alarms_per_year() == pytest.approx(4 * 10.0 / 940)


def test_a_regression_at_every_site_is_found_by_the_pooled_chart_and_claims_test() -> None:
    rng = random.Random(5)  # noqa: S311 - seeded test data
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    counts = {f"site-{i}": [0, 0, 0, 0] for i in range(5)}
    fired: list[str] = []
    for step in range(200):
        site = f"site-{step % 5}"
        misses = sum(rng.random() > 0.70 for _ in range(5))
        counts[site][0] += 5 - misses
        counts[site][1] += misses
        counts[site][2] += 15
        cells = counts[site]
        fired += [s.detector for s in pooled.observe(tally(site, (*cells,)))]  # type: ignore[arg-type]
    assert "pooled_sensitivity_cusum" in fired
    assert "pooled_sensitivity_claims_test" in fired
    assert not any(name.startswith("pooled_specificity") for name in fired)


def test_the_state_round_trips_through_json() -> None:
    rng = random.Random(11)  # noqa: S311 - seeded test data
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    for sent in delivered(rng, site_histories(rng, 3, 5)):
        pooled.observe(sent)
    state = json.loads(json.dumps(pooled.to_state()))
    restored = PooledMonitor.from_state(state)
    assert restored.to_state() == pooled.to_state()
    follow_up = tally("site-0", (500, 500, 500, 500), 9)
    assert [s.detector for s in restored.observe(follow_up)] == [
        s.detector for s in pooled.observe(follow_up)
    ]
    assert restored.to_state() == pooled.to_state()


def _corrupt(change: Any) -> dict[str, Any]:
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    pooled.observe(tally("site-a", (8, 2, 30, 3)))
    state: dict[str, Any] = json.loads(json.dumps(pooled.to_state()))
    change(state)
    return state


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(state_version=99),
        lambda s: s["sites"]["site-a"].__setitem__(0, 44),  # sequence is not the count
        lambda s: s["sites"]["site-a"].__setitem__(1, [8, -2, 30, 3]),
        lambda s: s["sites"]["site-a"].__setitem__(3, "not a time"),
        lambda s: s["detectors"]["pooled_sensitivity_cusum"].__setitem__("s", [10**6] * 3),
        lambda s: s["detectors"]["pooled_sensitivity_claims_test"].update(n_cases=11, n_events=3),
        lambda s: s["detectors"].pop("pooled_specificity_cusum"),
        lambda s: s.pop("claims"),
        lambda s: s.update(change_starts={"pooled_sensitivity_cusum": [None]}),
    ],
    ids=[
        "unknown-version",
        "sequence-not-count",
        "negative-count",
        "bad-time",
        "cusum-past-threshold",
        "claims-test-beyond-counts",
        "detector-missing",
        "key-missing",
        "change-starts-not-its-charts",
    ],
)
def test_a_state_that_cannot_be_trusted_is_refused(change: Any) -> None:
    with pytest.raises(StateError):
        PooledMonitor.from_state(_corrupt(change))


def test_the_alert_names_the_version_and_lists_the_contributing_sites() -> None:
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    signals = []
    for step in range(60):
        site = ("site-a", "site-b", "site-c")[step % 3]
        k = step // 3 + 1
        signals += pooled.observe(tally(site, (6 * k, 4 * k, 0, 0), step))
    assert signals
    alert = pooled_alert(stream("site-a"), signals[0], pooled, T0)
    decoded = decode(Alert, encode(alert))  # the contract the sink and dashboards read
    assert decoded.stream == group_stream("dr|2.2.0.0|referable_dr")
    assert decoded.stream.site_id == POOLED_SITE
    assert "dr 2.2.0.0" in decoded.message
    for site in ("site-a", "site-b", "site-c"):
        assert site in decoded.message
        assert decoded.evidence[f"site:{site}"] > 0
    assert decoded.evidence["sites"] == 3
    assert decoded.detector.startswith("pooled_sensitivity")
    again = pooled_alert(stream("site-b"), signals[0], pooled, T0 + timedelta(hours=1))
    assert again.alert_id == alert.alert_id  # same tallies, same alert: deduplicated downstream


def test_a_site_streams_tally_is_its_cumulative_counts_from_its_table_state() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    outcomes = [
        make_outcome("positive", "positive", 0),
        make_outcome("negative", "positive", 1),
        make_outcome("negative", "negative", 2),
    ]
    for outcome in outcomes:
        monitor.observe(outcome)
    key = outcomes[0].stream
    state = json.loads(json.dumps(monitor.labelled_state()))
    sent = tally_of_labelled_state(key, state)
    assert sent is not None
    assert (sent.sequence, sent.counts) == (3, (1, 1, 1, 0))
    assert sent.stream == key
    assert version_key(key) == f"{key.device_id}|{key.device_version}|{key.task}"


def test_a_stream_without_outcomes_sends_no_tally() -> None:
    assert version_tally(stream("site-a"), (0, 0, 0, 0), None, None) is None
    fresh = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    assert tally_of_labelled_state(stream("site-a"), fresh.labelled_state()) is None


def test_a_tally_whose_counts_do_not_add_up_to_its_sequence_is_malformed() -> None:
    good = tally("site-a", (1, 2, 3, 4))
    raw = json.loads(encode(good))
    raw["sequence"] = 11
    from postmarket.contracts import ContractViolation

    with pytest.raises(ContractViolation):
        decode(VersionTally, json.dumps(raw).encode())


def _first_detection_days(
    seed: int, sites: int = 10, positives_per_day: int = 8
) -> tuple[int, int]:
    """Days until the first of ``sites`` site streams' sensitivity tests fires, and until the
    pooled stage's does, every site at a sensitivity of 0.74 (acceptable 0.818), under the
    default plan (100 streams, 10 groups: each pooled chart spends one test's part on ten
    sites' cases)."""
    rng = np.random.default_rng(seed)
    policy = MonitorPolicy(
        fleet_false_alarms_per_year=10.0, fleet_streams=100, fleet_pooled_groups=10
    )
    sensitivity = {"sensitivity": CLAIMS["sensitivity"]}
    bound = {"sensitivity": LOWER["sensitivity"]}
    site_tests = [
        [
            detector
            for name, detector in design_detectors(
                sensitivity, policy, None, bound
            ).detectors.items()
            if name in ("sensitivity_cusum", "sensitivity_claims_test")
        ]
        for _ in range(sites)
    ]
    pooled = PooledMonitor.for_claims(sensitivity, bound, policy)
    counts = [[0, 0] for _ in range(sites)]
    site_day = pooled_day = 0
    for day in range(1, 365):
        for index, tests in enumerate(site_tests):
            misses = rng.random(positives_per_day) < 0.26
            for miss in misses:
                if any([test.update(int(miss)).fired for test in tests]) and not site_day:
                    site_day = day
            counts[index][0] += int((~misses).sum())
            counts[index][1] += int(misses.sum())
            tp, fn = counts[index]
            if pooled.observe(tally(f"site-{index}", (tp, fn, 0, 0), day)) and not pooled_day:
                pooled_day = day
        if site_day and pooled_day:
            break
    return site_day, pooled_day


def test_pooling_finds_a_regression_shared_by_every_site_in_under_half_the_days() -> None:
    delays = [_first_detection_days(seed) for seed in range(8)]
    site_days = float(np.median([site for site, _ in delays]))
    pooled_days = float(np.median([pooled for _, pooled in delays]))
    assert all(site and pooled for site, pooled in delays)
    assert pooled_days <= site_days / 2


CHANGE_STEP = 30
"""The tally from which the sites' sensitivity drops (a tally an hour, sites in turn)."""
SITES = ("site-a", "site-b", "site-c")


def _regression_tallies() -> list[VersionTally]:
    """Three sites in turn, ten positives a tally: none missed before :data:`CHANGE_STEP`,
    half from it (the acceptable miss rate is 0.182)."""
    counts = {site: [0, 0] for site in SITES}
    tallies = []
    for step in range(CHANGE_STEP + 30):
        site = SITES[step % 3]
        misses = 5 if step >= CHANGE_STEP else 0
        counts[site][0] += 10 - misses
        counts[site][1] += misses
        tp, fn = counts[site]
        tallies.append(tally(site, (tp, fn, 0, 0), step / 24))
    return tallies


def _cusum_signals(tallies: list[VersionTally], reload: bool = False) -> list[Any]:
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    signals = []
    for sent in tallies:
        if reload:  # through the table's JSON after every tally, as a restarted worker
            pooled = PooledMonitor.from_state(json.loads(json.dumps(pooled.to_state())))
        signals += [s for s in pooled.observe(sent) if s.detector.endswith("cusum")]
    return signals


def test_a_pooled_cusum_alert_says_after_which_tally_the_change_began() -> None:
    [signal, *_] = _cusum_signals(_regression_tallies())
    # The run began with the first regressed increment, whose site's previous tally (three
    # steps before, the sites taking turns) had counted the cases up to then.
    assert signal.change_began_at == T0 + timedelta(hours=CHANGE_STEP - 3)
    assert signal.result.run_length % 10 == 0 and signal.result.run_length >= 10


def test_the_change_estimate_survives_the_monitors_state() -> None:
    kept = _cusum_signals(_regression_tallies())
    reloaded = _cusum_signals(_regression_tallies(), reload=True)
    assert [(s.change_began_at, s.result) for s in reloaded] == [
        (s.change_began_at, s.result) for s in kept
    ]


def test_a_state_from_before_the_estimate_loads_and_its_runs_start_unknown() -> None:
    tallies = _regression_tallies()
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    for sent in tallies[: CHANGE_STEP + 1]:  # the run has begun
        pooled.observe(sent)
    state = json.loads(json.dumps(pooled.to_state()))
    assert state.pop("change_starts")  # as a previous release wrote it
    loaded = PooledMonitor.from_state(state)
    signals = [s for t in tallies[CHANGE_STEP + 1 :] for s in loaded.observe(t)]
    [signal, *_] = [s for s in signals if s.detector.endswith("cusum")]
    assert signal.change_began_at is None


def test_the_pooled_alert_carries_the_change_estimate() -> None:
    tallies = _regression_tallies()
    pooled = PooledMonitor.for_claims(CLAIMS, LOWER, POLICY)
    signals = [s for t in tallies for s in pooled.observe(t) if s.detector.endswith("cusum")]
    alert = decode(Alert, encode(pooled_alert(stream("site-a"), signals[0], pooled, T0)))
    began = T0 + timedelta(hours=CHANGE_STEP - 3)
    assert alert.change_began_at == began
    assert f"counted after {began:%Y-%m-%d %H:%M} UTC" in alert.message
