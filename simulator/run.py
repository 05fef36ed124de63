"""Running a scenario: registry and site keys first, then the fleet through the collectors.

Records are handed to their site's collector in arrival order; at the end of every
simulated day (and whenever enough is queued) every site's outbox is drained, so what
reaches Kafka follows simulated time day by day. The ground truth is written before
anything is sent, so a run that is interrupted still says what it was sending.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.batching import DEFAULT_INPUT_CONTRACT, InputContract
from collectors.delivery import RecordSender
from simulator.collector_path import (
    SiteCollector,
    SiteSetup,
    registry_record,
    signing_key,
    site_key_record,
)
from simulator.fleet import SimulatedRecord
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth, registry_entries, write_ground_truth
from simulator.scenario import Scenario

DRAIN_EVERY = 2_000
"""Records handed to collectors between drains within a busy simulated day."""

ProgressCallback = Callable[[int, int, int], None]
"""Called with (records done, records in total, simulated day)."""


@dataclass(frozen=True)
class SimulationSummary:
    """What one run sent."""

    scenario: str
    seed: int
    records: int
    sent: int
    registry_entries: int
    predictions: int
    followups: int
    malformed: int
    ground_truth_path: Path
    seconds: float


def scratch_root() -> str | None:
    """Where the simulated sites keep their outboxes by default: memory when possible.

    Every outbox put is fsynced (the collector never loses a record); the simulated
    hospitals' disks are not what a run measures, so tmpfs keeps the demo fast.
    """
    shared_memory = Path("/dev/shm")  # noqa: S108 - a private mkdtemp directory inside it
    if shared_memory.is_dir() and os.access(shared_memory, os.W_OK):
        return str(shared_memory)
    return None


def arrival_day(record: SimulatedRecord, start: datetime) -> int:
    """The simulated day on which ``record`` reaches its collector."""
    return (record.arrival_time - start).days


def run_simulation(
    scenario: Scenario,
    connect: Callable[[], RecordSender],
    ground_truth_path: Path,
    state_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    site_setups: Mapping[str, SiteSetup] | None = None,
    input_contract: InputContract = DEFAULT_INPUT_CONTRACT,
) -> SimulationSummary:
    """Simulate ``scenario`` and deliver it through ``connect``'s sender; write its truth.

    ``state_dir`` holds each site's outbox and case index (a temporary directory when
    None, see :func:`scratch_root`); rerunning into the same one resumes, and the outbox
    drops what it still holds. A site in ``site_setups`` uses its keys and connection
    from there (``connect`` then only publishes the registry and the sites' public keys).
    ``input_contract`` is every collector's (v2 signed batches by default).
    """
    setups = dict(site_setups or {})
    began = time.monotonic()
    records = fleet_records(scenario)
    truth = ground_truth(scenario, records)
    write_ground_truth(ground_truth_path, truth)
    entries = registry_entries(scenario)
    site_keys = [
        (
            setups[site.id].signing_key
            if site.id in setups
            else signing_key(scenario.seed, site.id)
        ).registration(site.id, registered_at=scenario.start)
        for site in scenario.sites
    ]
    registry_sender = connect()
    try:
        registry_sender.deliver_encoded(
            [registry_record(entry) for entry in entries]
            + [site_key_record(registration) for registration in site_keys]
        )
    finally:
        registry_sender.close()
    with tempfile.TemporaryDirectory(prefix="postmarket-simulator-", dir=scratch_root()) as scratch:
        home = state_dir or Path(scratch)
        sent = _deliver_fleet(scenario, records, connect, home, progress, setups, input_contract)
    return SimulationSummary(
        scenario=scenario.name,
        seed=scenario.seed,
        records=len(records),
        sent=sent,
        registry_entries=len(entries),
        predictions=truth["counts"]["predictions"],
        followups=truth["counts"]["followups"],
        malformed=truth["counts"]["malformed"],
        ground_truth_path=ground_truth_path,
        seconds=time.monotonic() - began,
    )


def _deliver_fleet(
    scenario: Scenario,
    records: list[SimulatedRecord],
    connect: Callable[[], RecordSender],
    home: Path,
    progress: ProgressCallback | None,
    setups: Mapping[str, SiteSetup],
    input_contract: InputContract,
) -> int:
    collectors = {
        site.id: SiteCollector(
            site, scenario.seed, home, connect, setups.get(site.id), input_contract
        )
        for site in scenario.sites
    }
    sent, queued, current_day = 0, 0, 0

    def drain() -> int:
        return sum(collector.deliver() for collector in collectors.values())

    try:
        for done, record in enumerate(records, start=1):
            day = arrival_day(record, scenario.start)
            if day != current_day or queued >= DRAIN_EVERY:
                sent += drain()
                queued, current_day = 0, day
            collectors[record.site_id].accept(record)
            queued += 1
            if progress is not None and (done % 200 == 0 or done == len(records)):
                progress(done, len(records), current_day)
        sent += drain()
    finally:
        for collector in collectors.values():
            collector.close()
    return sent
