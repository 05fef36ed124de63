"""Labelled charts designed at the acceptable level: the false-alarm guarantee holds for every
site at or above it, and no claimed metric is ever silently left without a chart."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import (
    BernoulliCUSUM,
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    bernoulli_cusum_arl,
)
from postmarket.contracts.events import JoinPosition, StreamKey
from streams.alerting import alert_for
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.detector_design import chart_alternatives
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import UNMONITORED_STREAM, StreamMonitor
from tests.factories import T0, make_outcome, make_registry_entry

ENTRY = make_registry_entry()
CLAIMS = claimed_performance(ENTRY, "referable_dr")  # sensitivity 0.872 (0.818-0.914)
LOWER = claimed_lower_bounds(ENTRY, "referable_dr")
POLICY = MonitorPolicy(arl0_cases=5000.0)
STREAM = StreamKey(
    device_id="dr-screen", device_version="2.1.0.3", site_id="site-a", task="referable_dr"
)


def _cusum(monitor: StreamMonitor, metric: str = "sensitivity") -> BernoulliMultiCUSUM:
    chart = monitor.detectors[f"{metric}_cusum"]
    assert isinstance(chart, BernoulliMultiCUSUM)
    return chart


def _component_arls(chart: BernoulliMultiCUSUM, performance: float) -> list[float]:
    """Exact ARL of each of the chart's CUSUMs alone at true performance ``performance``."""
    return [
        bernoulli_cusum_arl(1.0 - performance, chart.p0, p1, h, chart.resolution)
        for p1, h in zip(chart.p1, chart.h, strict=True)
    ]


def _arl(chart: BernoulliMultiCUSUM, performance: float) -> float:
    """The chart's guaranteed ARL: 1 / sum of its CUSUMs' alarm rates (Bonferroni)."""
    return 1.0 / sum(1.0 / arl for arl in _component_arls(chart, performance))


def test_the_claims_lower_bounds_come_from_the_registry() -> None:
    assert LOWER == {"sensitivity": 0.818, "specificity": 0.877}


def test_the_point_estimate_design_alarms_five_times_too_often_inside_the_registered_ci() -> None:
    # The audit's finding, kept as the reason for the default: 0.85 is inside 0.818-0.914.
    # (The single CUSUM the release before charted, designed at the point estimate.)
    chart = BernoulliCUSUM.for_arl0(1 - 0.872, 1 - 0.802, 5000)
    assert bernoulli_cusum_arl(1 - 0.872, chart.p0, chart.p1, chart.h) == pytest.approx(5003, abs=1)
    assert bernoulli_cusum_arl(1 - 0.85, chart.p0, chart.p1, chart.h) == pytest.approx(975, abs=1)
    # The chart now run is designed at the acceptable level (0.818): 0.85 waits longer.
    charted = _cusum(StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER))
    assert _arl(charted, 0.85) > _arl(charted, 0.818) >= 5000


def replace_level(rule: str) -> MonitorPolicy:
    return MonitorPolicy(arl0_cases=5000.0, acceptable_level=rule)  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", ["sensitivity", "specificity"])
def test_the_arl0_holds_at_the_acceptable_level_and_everywhere_above_it(metric: str) -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    chart, acceptable = _cusum(monitor, metric), LOWER[metric]  # type: ignore[index]
    assert monitor.levels[metric].acceptable == acceptable  # type: ignore[index]
    assert chart.p0 == pytest.approx(1.0 - acceptable)
    # Exact at the boundary: each CUSUM's ARL0 is the smallest lattice value reaching three
    # times the target, so their alarm rates sum to at most 1 / 5,000 (Bonferroni) ...
    assert all(15000.0 <= arl < 15000.0 * 1.05 for arl in _component_arls(chart, acceptable))
    assert 5000.0 <= _arl(chart, acceptable) < 5000.0 * 1.05
    assert chart.arl0 == pytest.approx(_arl(chart, acceptable), rel=1e-9)
    # ... and the run length lengthens as performance rises (stochastically monotone in the
    # event rate), so every site at or above the acceptable level waits longer for an alarm.
    # (up to 0.08 above it: further up the exact ARLs exceed 1e12 and the solve loses digits)
    grid = np.linspace(acceptable, acceptable + 0.08, 17)
    arls = [_arl(chart, float(p)) for p in grid]
    assert all(later > earlier for earlier, later in zip(arls, arls[1:], strict=False))
    # Below it, the chart detects: shorter than its ARL0, the faster the lower.
    below = [_arl(chart, acceptable - drop) for drop in (0.02, 0.05, 0.1)]
    assert 5000.0 > below[0] > below[1] > below[2]


def test_the_chart_is_tuned_to_drops_around_the_rejectable_level() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    level = monitor.levels["sensitivity"]
    assert (level.acceptable, level.rejectable, level.basis) == (0.818, 0.748, "ci_lower")
    # from a quarter of the drop (sensitivity 0.80) to three drops (0.61) below 0.818
    assert _cusum(monitor).p1 == chart_alternatives(0.818, 0.748) == (0.1995, 0.2395, 0.392)


def test_an_explicit_acceptable_level_overrides_the_rule() -> None:
    policy = MonitorPolicy(explicit_acceptable=(("sensitivity", 0.80),))
    monitor = StreamMonitor.for_claims(CLAIMS, policy, None, LOWER)
    assert monitor.levels["sensitivity"].acceptable == 0.80
    assert monitor.levels["specificity"].acceptable == 0.877


def test_the_claims_test_is_one_sided_at_the_acceptable_level() -> None:
    test = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER).detectors[
        "sensitivity_claims_test"
    ]
    assert isinstance(test, BetaBinomialConfidenceSequence)
    assert (test.p0, test.alternative) == (pytest.approx(0.182), "greater")


@pytest.mark.parametrize("sensitivity", [0.818, 0.86])
def test_the_fleet_rarely_rejects_a_site_at_or_above_the_acceptable_level(
    sensitivity: float,
) -> None:
    # 300 sites, 1,200 referable cases each, never restarted: the share of sites whose
    # claims test ever says "below" stays within alpha (0.05) plus Monte Carlo error.
    rng = np.random.default_rng(7)
    sites, cases = 300, 1200
    misses = rng.random((sites, cases)) < 1.0 - sensitivity
    rejected = 0
    for stream in misses:
        test = BetaBinomialConfidenceSequence(0.182, 0.05, alternative="greater")
        rejected += any(test.update(int(miss)).fired for miss in stream)
    standard_error = (0.05 * 0.95 / sites) ** 0.5
    assert rejected / sites <= 0.05 + 2 * standard_error


def test_the_claims_test_finds_a_site_well_below_the_acceptable_level() -> None:
    rng = np.random.default_rng(8)
    test = BetaBinomialConfidenceSequence(0.182, 0.05, alternative="greater")
    fired = [i for i, miss in enumerate(rng.random(2000) < 0.30) if test.update(int(miss)).fired]
    assert fired and fired[0] < 400


def test_a_claim_of_100_percent_under_the_point_estimate_rule_falls_back_to_its_bound() -> None:
    monitor = StreamMonitor.for_claims(
        {"sensitivity": 1.0}, replace_level("point_estimate"), None, {"sensitivity": 0.94}
    )
    level = monitor.levels["sensitivity"]
    assert level.acceptable == 0.94
    assert level.basis.startswith("ci_lower (point estimate 1.000")
    assert "sensitivity_cusum" in monitor.detectors
    assert not monitor.unmonitored


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)


def test_a_metric_no_chart_can_monitor_raises_one_unmonitored_stream_alert() -> None:
    claims = {"sensitivity": 0.999999, "specificity": 0.907}
    bounds = {"sensitivity": 0.9999, "specificity": 0.877}
    monitor = StreamMonitor.for_claims(claims, POLICY, None, bounds)
    assert set(monitor.unmonitored) == {"sensitivity"}
    assert "specificity_cusum" in monitor.detectors  # the rest of the stream still runs
    assert "sensitivity_cusum" not in monitor.detectors
    [signal] = monitor.observe_score(0.3, _at(1), "negative", {})
    assert signal.detector == UNMONITORED_STREAM
    alert = alert_for(STREAM, signal, monitor, T0)
    assert alert.severity == "critical"
    assert "sensitivity acceptable level 0.9999 (ci_lower) is above 0.995" in alert.message
    # Raised once: not again on later events, nor after a restart from the stored states.
    assert monitor.observe_score(0.3, _at(2), "negative", {}) == []
    restored = StreamMonitor.from_states(*monitor.to_states())
    outcome = make_outcome("positive", "negative", 5)
    assert [s.detector for s in restored.observe(outcome)] == []
    assert restored.unmonitored == monitor.unmonitored


def test_a_stream_state_from_before_the_bounds_restarts_its_charts_at_the_acceptable_level() -> (
    None
):
    legacy = StreamMonitor.for_claims(CLAIMS, POLICY)  # no bounds: as older releases charted
    assert legacy.levels["sensitivity"].basis == "point_estimate"
    for i in range(30):
        legacy.observe(make_outcome("negative", "positive", i))
    restored = StreamMonitor.from_states(*legacy.to_states())
    assert _cusum(restored).p0 == pytest.approx(0.128)
    restored.adopt_claims(CLAIMS, None, LOWER)
    assert _cusum(restored).p0 == pytest.approx(0.182)
    assert restored.false_negatives == 30  # counts kept, the chart restarted
    assert restored.detectors["sensitivity_cusum"].to_state()["state"]["s"] == [0, 0, 0]
    again = StreamMonitor.from_states(*restored.to_states())
    assert again.levels == restored.levels


def test_a_generous_budget_still_designs_every_windowed_test() -> None:
    # 1,000 false alarms a year for one stream: each windowed test's share would give an
    # ARL0 below its window; it is raised to two windows instead (spending less).
    policy = MonitorPolicy(fleet_false_alarms_per_year=1000.0, fleet_streams=1)
    monitor = StreamMonitor.for_claims(CLAIMS, policy, None, LOWER)
    assert policy.test_arl0("predictions") == 2 * policy.estimate_window
    assert {"calibration_test", "sensitivity_estimate", "sensitivity_cusum"} <= set(
        monitor.detectors
    )
    assert not monitor.unmonitored
