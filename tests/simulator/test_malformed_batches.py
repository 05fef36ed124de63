"""Malformed batches: bad events inside a batch a site's collector signs correctly.

A dry run of a two-day fleet with two such batches at one site: each is one record on
``pms.inputs.v2``, verified by its site's registered key, in which exactly the intended
events are refused (with the reasons the workers give them) and every other event is one
the collector made. Scoring holds the workers to dead-lettering each bad event at its place
and counting every good one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from collectors.batching import BatchEntry
from collectors.producer import EncodedEvent
from collectors.pseudonym import case_pseudonym
from postmarket import topics
from postmarket.authenticity import SiteKeyring
from postmarket.contracts import (
    DeadLetter,
    FollowUp,
    Outcome,
    Prediction,
    SiteKeyRegistration,
    decode,
)
from postmarket.contracts.batches import DecodedBatch, decode_batch
from postmarket.contracts.events import JoinPosition
from simulator.collector_path import pseudonym_key
from simulator.fleet import MalformedBatchRecord, SimulatedCase
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth
from simulator.malformed import (
    BATCH_DEFECTS,
    BadBatchEvent,
    assemble_batch,
    bad_batch_events,
)
from simulator.scenario import MalformedBatch, Scenario
from simulator.scoring import PipelineOutput, fleet_facts, score_run
from streams.casefile import joined_outcome
from streams.deadletter import dead_letter
from streams.truth import final_truth
from tests.simulator.conftest import DryRun, dry_run

SITE = "sim-south"
INJECTION = "bad-batch-south"
NOON = datetime(2026, 1, 2, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Injected:
    scenario: Scenario
    run: DryRun
    batches: list[MalformedBatchRecord]
    """As the fleet made them, in order."""
    records: list[EncodedEvent]
    """The batch records sent, in the same order."""


@pytest.fixture(scope="module")
def injected(small_scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Injected:
    batch = MalformedBatch(
        kind="malformed_batch", name=INJECTION, day=1, site=SITE, count=2, good_cases=4
    )
    scenario = Scenario.model_validate(
        small_scenario.model_dump() | {"days": 2, "injections": [batch.model_dump()]}
    )
    run = dry_run(scenario, tmp_path_factory.mktemp("malformed-batch"))
    batches = [r for r in fleet_records(scenario) if isinstance(r, MalformedBatchRecord)]
    sent = [r for r in run.records if r.topic == topics.INPUTS and b"c-malformed-batch" in r.value]
    return Injected(scenario, run, batches, sent)


def refused(batch: DecodedBatch) -> dict[int, tuple[bytes, str]]:
    return {
        e.index: (e.original(), e.violation.code) for e in batch.elements if e.violation is not None
    }


def test_each_malformed_batch_is_one_record_verified_by_its_sites_registered_key(
    injected: Injected,
) -> None:
    keyring = SiteKeyring(
        decode(SiteKeyRegistration, r.value)
        for r in injected.run.records
        if r.topic == topics.SITE_KEYS
    )
    assert len(injected.records) == len(injected.batches) == 2
    for record in injected.records:
        signer = keyring.verify(record.headers, record.topic, record.key, record.value)
        keyring.check_site(signer, SITE)
        assert record.key == SITE.encode()
        assert decode_batch(record.value).site_id == SITE


def test_exactly_the_intended_events_are_refused_with_the_workers_reasons(
    injected: Injected,
) -> None:
    for made, record in zip(injected.batches, injected.records, strict=True):
        expected = {
            bad.index: (bad.value, bad.expected_reason)
            for bad in made.bad
            if bad.expected_reason is not None
        }
        batch = decode_batch(record.value)
        assert refused(batch) == expected
        assert len(batch.elements) == 2 * len(made.cases) + len(BATCH_DEFECTS)


def test_the_repeated_event_id_is_a_copy_of_the_batchs_first_prediction(
    injected: Injected,
) -> None:
    for made, record in zip(injected.batches, injected.records, strict=True):
        (repeat,) = [bad for bad in made.bad if bad.defect == "duplicate_event_id"]
        events = decode_batch(record.value).elements
        assert isinstance(events[0].event, Prediction)
        assert events[repeat.index].event == events[0].event


def test_the_good_events_are_the_collectors_own_settled_cases(injected: Injected) -> None:
    for made, record in zip(injected.batches, injected.records, strict=True):
        bad_places = {bad.index for bad in made.bad}
        good = [e.event for e in decode_batch(record.value).elements if e.index not in bad_places]
        predictions = [e for e in good if isinstance(e, Prediction)]
        followups = [e for e in good if isinstance(e, FollowUp)]
        assert [p.event_time for p in predictions] == [c.event_time for c in made.cases]
        assert [f.case_pseudonym for f in followups] == [p.case_pseudonym for p in predictions]
        assert all(final_truth([f]) is not None for f in followups)
        key = pseudonym_key(injected.scenario.seed, SITE)  # as every case of the site
        pseudonyms = [case_pseudonym(key, case.study_uid) for case in made.cases]
        assert [p.case_pseudonym for p in predictions] == pseudonyms


def test_the_ground_truth_counts_the_batches_good_cases_in_their_streams(
    injected: Injected,
) -> None:
    truth = ground_truth(injected.scenario, fleet_records(injected.scenario))
    (entry,) = truth["injections"]
    assert entry["expected_signal"] == "dead_letters_in_batch"
    assert [b["good_events"] for b in entry["batches"]] == [8, 8]
    in_streams = sum(stream["cases"] for stream in truth["streams"])
    live = sum(1 for r in fleet_records(injected.scenario) if isinstance(r, SimulatedCase))
    assert in_streams == truth["counts"]["predictions"] == live + 8


@pytest.mark.parametrize("good", [2, 3, 5, 8, 40])
def test_bad_events_take_distinct_places_each_between_good_ones(good: int) -> None:
    bad = bad_batch_events("b", SITE, "sim-north", good, NOON)
    places = [event.index for event in bad]
    assert len(set(places)) == len(BATCH_DEFECTS)
    assert set(places) <= set(range(good + len(bad)))
    assert 0 not in places and 1 not in places
    good_entries: list[BatchEntry] = [
        ("prediction", f"e-{i}", b'{"n":%d}' % i) for i in range(good)
    ]
    assert len(orjson.loads(assemble_batch(SITE, good_entries, bad))["events"]) == good + 5


def test_a_repeat_must_copy_an_earlier_event() -> None:
    good: list[BatchEntry] = [("prediction", f"e-{i}", b'{"n":%d}' % i) for i in range(3)]
    with pytest.raises(ValueError, match="earlier"):
        assemble_batch(SITE, good, [BadBatchEvent(1, "duplicate_event_id", None, repeats=2)])


# --- scoring --------------------------------------------------------------------------------


def worker_output(injected: Injected) -> tuple[list[DeadLetter], list[Prediction], list[Outcome]]:
    """What a correct worker gives for the injected batches: a dead letter per refused
    event at its place, every good prediction accepted, an outcome per good case."""
    letters: list[DeadLetter] = []
    predictions: list[Prediction] = []
    outcomes: list[Outcome] = []
    for offset, record in enumerate(injected.records):
        batch = decode_batch(record.value)
        for element in batch.elements:
            if element.violation is not None:
                letters.append(
                    dead_letter(
                        topics.INPUTS,
                        0,
                        offset,
                        element.original(),
                        element.violation,
                        element.index,
                    )
                )
        events = [e.event for e in batch.elements if e.event is not None]
        found = {e.event_id: e for e in events if isinstance(e, Prediction)}
        predictions.extend(found.values())
        for prediction in found.values():
            (truth,) = [
                final_truth([e])
                for e in events
                if isinstance(e, FollowUp) and e.case_pseudonym == prediction.case_pseudonym
            ]
            assert truth is not None
            position = JoinPosition(topic=topics.INPUTS, partition=0, offset=offset, rank=0)
            outcomes.append(joined_outcome(prediction, truth, position))
    return letters, predictions, outcomes


def score(
    injected: Injected,
    letters: Sequence[DeadLetter],
    predictions: Sequence[Prediction],
    outcomes: Sequence[Outcome] | None = None,
) -> Any:
    records = fleet_records(injected.scenario)
    truth = ground_truth(injected.scenario, records)
    output = PipelineOutput([], letters, predictions, outcomes)
    (change,) = score_run(truth, fleet_facts(records), output).changes
    return change


def test_a_malformed_batch_is_detected_when_each_bad_event_is_dead_lettered_at_its_place(
    injected: Injected,
) -> None:
    letters, predictions, outcomes = worker_output(injected)
    change = score(injected, letters, predictions, outcomes)
    assert change.detected and change.within_bound, change.detail
    assert change.detail.startswith("8 of 8 bad events")


def test_a_bad_event_dead_lettered_at_another_place_is_not_enough(injected: Injected) -> None:
    letters, predictions, _ = worker_output(injected)
    moved = [letters[0].model_copy(update={"source_index": 0}), *letters[1:]]
    assert not score(injected, moved, predictions).detected


def test_a_batch_dead_lettered_whole_is_not_enough(injected: Injected) -> None:
    letters, predictions, _ = worker_output(injected)
    whole = [letter.model_copy(update={"source_index": None}) for letter in letters]
    assert not score(injected, whole, predictions).detected


def test_a_good_event_dead_lettered_fails_the_batch(injected: Injected) -> None:
    letters, predictions, _ = worker_output(injected)
    good = letters[0].model_copy(update={"original": predictions[0].model_dump_json().encode()})
    assert score(injected, letters, predictions).detected
    assert not score(injected, [*letters, good], predictions).detected


def test_a_good_prediction_missing_fails_the_batch(injected: Injected) -> None:
    letters, predictions, _ = worker_output(injected)
    assert not score(injected, letters, predictions[1:]).detected


def test_a_good_case_without_its_outcome_fails_the_batch_when_outcomes_are_read(
    injected: Injected,
) -> None:
    letters, predictions, outcomes = worker_output(injected)
    assert not score(injected, letters, predictions, outcomes[1:]).detected
