"""Simulated collectors send what real ones do: v2 signed batches by default, the same
events as v1 would carry, and the malformed injections still as raw v1 records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from postmarket import topics
from postmarket.contracts.events import MAX_BATCH_EVENTS
from simulator.scenario import Scenario
from tests.collectors.batch_records import batch_events, read_batch
from tests.simulator.conftest import DryRun, dry_run


def event_identities(run: DryRun) -> Counter[tuple[str, bytes, str]]:
    """(v1 topic, key, event id) of every case event sent, counted."""
    return Counter(
        (r.topic, r.key, json.loads(r.value)["event_id"])
        for r in run.events
        if r.topic in (topics.PREDICTIONS, topics.FOLLOWUPS) and r.key.startswith(b"c-")
    )


def test_batches_carry_every_event_v1_would_send_exactly_once(
    small_scenario: Scenario, small_dry_run: DryRun, tmp_path: Path
) -> None:
    v1 = dry_run(small_scenario, tmp_path, input_contract="v1")
    assert topics.INPUTS not in {r.topic for r in v1.records}
    assert event_identities(small_dry_run) == event_identities(v1)
    assert max(event_identities(small_dry_run).values()) == 1


def test_every_batch_is_one_sites_keyed_by_it_and_valid(small_dry_run: DryRun) -> None:
    batches = [r for r in small_dry_run.records if r.topic == topics.INPUTS]
    assert batches
    for record in batches:
        events = batch_events(record.key, record.value)
        assert 1 <= len(events) <= MAX_BATCH_EVENTS
        assert {e.site_id for e in events} == {read_batch(record.key, record.value).site_id}


def test_malformed_injections_stay_raw_v1_records(small_dry_run: DryRun) -> None:
    malformed = [r for r in small_dry_run.records if r.key.startswith(b"malformed-")]
    assert malformed and {r.topic for r in malformed} == {topics.PREDICTIONS}
    batched = b"".join(r.value for r in small_dry_run.records if r.topic == topics.INPUTS)
    assert b"malformed-device" not in batched
