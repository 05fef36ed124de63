"""The demo's 2.2.0.0 regression through the project's own monitors without Kafka: the site
streams (:class:`~simulator.monitor_replay.MonitorReplay`) and, on their cumulative tallies,
the pooled per-version stage, both turned into the alerts the worker raises and scored as the
demo scores them: the pooled stage finds the regression within its bound with no false
alarm; the issue's goal (at most half the per-site days) is not reachable here, see the xfail.

Each stream sends its tally once per simulated hour in which its outcomes changed (the worker
sends one per flush; an hour is coarser, so the pooled charts look less often than they do
in the worker, never more)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest

from launcher.demo import demo_plan
from postmarket.config import Settings
from postmarket.contracts import Alert, StreamKey, VersionTally, version_key
from simulator.fleet import SimulatedCase, SimulatedFollowUp, SimulatedRecord
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth, registry_entries
from simulator.monitor_replay import MonitorReplay, ReplayAlarm
from simulator.scenario import Scenario
from simulator.scoring import ChangeScore, PipelineOutput, Scorecard, fleet_facts, score_run
from streams.alerting import alert_for
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.monitor_policy import planned_policy
from streams.pooled import POOLED_SITE, PooledMonitor, version_tally
from streams.pooled_alerts import pooled_alert
from streams.stream_monitor import Signal, StreamMonitor

pytestmark = pytest.mark.slow

REGRESSION = "dr-regression-2.2.0.0"
TALLY_EVERY = timedelta(hours=1)


class PooledReplay(MonitorReplay):
    """The site streams' replay, raising the worker's alerts, with the pooled stage beside it."""

    def __init__(self, scenario: Scenario, settings: Settings) -> None:
        super().__init__(scenario, planned_policy(settings))
        self.alerts: list[Alert] = []
        self.pooled: dict[str, PooledMonitor] = {}
        self._changed: dict[str, StreamMonitor] = {}
        self._last_tally: datetime | None = None
        self._entries = {(e.device_id, e.device_version): e for e in registry_entries(scenario)}

    def feed(self, records: Iterable[SimulatedRecord]) -> list[ReplayAlarm]:
        for record in records:
            if isinstance(record, SimulatedCase | SimulatedFollowUp):
                self._send_tallies(record.arrival_time)
            super().feed([record])
        self._send_tallies(None)
        return self.alarms

    def _alarms(
        self,
        case: SimulatedCase,
        monitor: StreamMonitor,
        signals: list[Signal],
        raised_at: datetime,
    ) -> list[ReplayAlarm]:
        stream = StreamKey(
            device_id=case.device_id,
            device_version=case.device_version,
            site_id=case.site_id,
            task=case.task,
        )
        self.alerts += [alert_for(stream, signal, monitor, raised_at) for signal in signals]
        if monitor.outcomes:
            self._changed[stream.as_key()] = monitor
        return super()._alarms(case, monitor, signals, raised_at)

    def _send_tallies(self, now: datetime | None) -> None:
        if (
            now is not None
            and self._last_tally is not None
            and now - self._last_tally < TALLY_EVERY
        ):
            return
        self._last_tally = now
        changed, self._changed = self._changed, {}
        for key, monitor in sorted(changed.items()):
            stream = StreamKey.from_key(key)
            counts = (
                monitor.true_positives,
                monitor.false_negatives,
                monitor.true_negatives,
                monitor.false_positives,
            )
            tally = version_tally(stream, counts, monitor.first_case_time, monitor.last_case_time)
            if tally is not None:
                self._pool(tally, now or monitor.last_case_time or tally.last_case_time)

    def _pool(self, tally: VersionTally, now: datetime) -> None:
        group = version_key(tally.stream)
        pooled = self.pooled.get(group)
        entry = self._entries.get((tally.stream.device_id, tally.stream.device_version))
        task = tally.stream.task
        if pooled is None:
            pooled = self.pooled[group] = PooledMonitor.for_claims(
                claimed_performance(entry, task),
                claimed_lower_bounds(entry, task),
                self.policy,
                entry.reference_prevalence if entry is not None else None,
            )
        for signal in pooled.observe(tally):
            self.alerts.append(pooled_alert(tally.stream, signal, pooled, now))


@pytest.fixture(scope="module")
def scored(demo_scenario: Scenario) -> Scorecard:
    records = fleet_records(demo_scenario)
    truth = ground_truth(demo_scenario, records)
    completeness = {d.id: d.ground_truth.completeness for d in demo_scenario.devices}
    settings = Settings().model_copy(update=demo_plan(truth, completeness))
    replay = PooledReplay(demo_scenario, settings)
    replay.feed(records)
    return score_run(truth, fleet_facts(records), PipelineOutput(replay.alerts))


def regression_of(card: Scorecard) -> ChangeScore:
    [regression] = [change for change in card.changes if change.name == REGRESSION]
    print(  # noqa: T201 - the numbers the report quotes, shown with -s
        f"\n{REGRESSION}: per-site {regression.site_delay_days} d, pooled "
        f"{regression.pooled_delay_days} d, first: {regression.detail}"
    )
    return regression


def test_the_pooled_stage_finds_the_demos_regression_within_its_bound(scored: Scorecard) -> None:
    regression = regression_of(scored)
    assert regression.pooled_delay_days is not None
    assert regression.pooled_delay_days <= regression.bound.days
    assert any(name.startswith("pooled_") for name in regression.detectors)


def test_the_pooled_stage_raises_no_false_alarm_on_the_demo(scored: Scorecard) -> None:
    assert [a for a in scored.false_alarms if a.where.split("|")[2] == POOLED_SITE] == []


@pytest.mark.xfail(
    strict=True,
    reason="not reachable on this scenario: the per-site 6.85 d is site-a's 2.2.0.0 stream, "
    "whose sensitivity the new camera also cut, and pooling dilutes it; when the version's "
    "pooled counts reach cases of day 3.4 they hold 8 labelled positives (1 miss), under one "
    "nat of evidence even for the true alternative",
)
def test_the_pooled_stage_finds_the_demos_regression_in_half_the_per_site_days(
    scored: Scorecard,
) -> None:
    regression = regression_of(scored)
    assert regression.site_delay_days is not None and regression.pooled_delay_days is not None
    assert regression.pooled_delay_days <= regression.site_delay_days / 2
