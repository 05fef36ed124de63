"""The join applies each event to its site's streams itself, on the site's partition: all
or nothing with its case file, decisions forwarded by site applied at their original
position, and, at each assignment, what the case files hold and the streams do not (the
previous release's unapplied outcomes, adopted legacy states) applied exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Set
from typing import Any

import pytest

from detectors import BetaBinomialConfidenceSequence
from postmarket import topics
from postmarket.contracts import DeadLetter, Outcome, Rebaseline, decode, encode
from postmarket.contracts.batches import encode_batch
from streams import app as worker
from streams import site_streams
from streams.agents import join
from streams.casefile import CaseFile, RecordPosition
from streams.channels import (
    SITE_INPUTS,
    case_files,
    site_stream_monitors,
    site_stream_prediction_monitors,
    stream_monitors,
    stream_prediction_monitors,
)
from streams.rekeying import Origin, forwarded_headers
from streams.retention import case_key, key_partition
from streams.stream_monitor import Signal, StreamMonitor
from tests.factories import make_followup, make_prediction, make_rebaseline
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until
from tests.streams.test_agents_join import (
    _entries,
    _put_batch,
    counter,
    dead_letters_sent,
    outcomes_sent,
    recording_join,
    run_join,
)
from tests.streams.test_stream_claims_restart import _rejected_stream

SITE = "site-a"
PARTITION = key_partition(SITE, worker.settings.topic_partitions)
STREAM_KEY = make_prediction().stream
STREAM = STREAM_KEY.as_key()
LEGACY_PARTITION = key_partition(STREAM, worker.settings.topic_partitions)
LABELLED_CHANGELOG = site_stream_monitors.changelog_topic.get_topic_name()
LABEL_FREE_CHANGELOG = site_stream_prediction_monitors.changelog_topic.get_topic_name()
LEGACY_CHANGELOG = stream_monitors.changelog_topic.get_topic_name()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    yield from recording_join(monkeypatch)


@pytest.fixture
def owning(monkeypatch: pytest.MonkeyPatch) -> None:
    """This worker owns every input partition (the test context assigns none)."""
    every = set(range(worker.settings.topic_partitions))
    monkeypatch.setattr(site_streams, "owned_partitions", lambda topic: every)


def labelled_counts() -> list[int]:
    state = site_stream_monitors.get(STREAM)
    assert state is not None, "the stream's state was never written"
    return list(state["counts"])


async def put_decision(feed: Feed, decision: Rebaseline, offset: int) -> Any:
    """A decision as the re-baselining agent forwards it: keyed by its site, its origin the
    record the evidence store wrote (on the stream key's partition)."""
    origin = Origin(topics.REBASELINES, LEGACY_PARTITION, offset, STREAM.encode())
    headers = forwarded_headers(origin, None)
    site = decision.stream.site_id
    return await feed.put(
        SITE_INPUTS, site.encode(), encode(decision), partition=PARTITION, headers=headers
    )


def test_a_failure_applying_to_the_streams_leaves_case_and_stream_and_dead_letters_the_event(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction = make_prediction(case_pseudonym="c-1", decision="negative")
    followup = make_followup(case_pseudonym="c-1", label="positive")
    observe = StreamMonitor.observe
    broken = {"on": True}

    def observe_with_a_bug(self: StreamMonitor, outcome: Outcome) -> list[Signal]:
        signals = observe(self, outcome)  # counted, then the bug
        if broken["on"]:
            raise RuntimeError("a bug after the monitor counted the outcome")
        return signals

    monkeypatch.setattr(StreamMonitor, "observe", observe_with_a_bug)

    async def scenario(feed: Feed) -> None:
        first = await feed.put_v1_event(topics.PREDICTIONS, "c-1", prediction)
        failing = await feed.put_v1_event(topics.FOLLOWUPS, "c-1", followup)
        await wait_until(settled(join.unacked, [first, failing]), "both records handled")
        await join.flush_joined()
        # The follow-up is dead-lettered: its case still waits for truth, its stream holds
        # the prediction and no outcome, and no outcome was produced.
        case = CaseFile.from_state(case_files.data[case_key(SITE, "c-1")])
        assert case.truth is None and not case.knows(followup)
        assert STREAM not in site_stream_monitors.data
        assert site_stream_prediction_monitors.data[STREAM]["predictions"] == 1
        assert outcomes_sent(producer) == []
        broken["on"] = False
        resent = await feed.put_v1_event(topics.FOLLOWUPS, "c-1", followup)  # the collector
        await wait_until(settled(join.unacked, [resent]), "the resend joined")
        await join.flush_joined()

    run_join(scenario)
    [letter] = dead_letters_sent(producer)
    assert (letter.reason_code, letter.source_topic) == ("internal_error", topics.FOLLOWUPS)
    assert letter.original == encode(followup)
    # Joined once, as if the failed attempt had never been: a false negative, counted once.
    [outcome] = outcomes_sent(producer)
    assert outcome.label == "positive"
    assert labelled_counts() == [0, 1, 0, 0]


def test_a_forwarded_decision_is_applied_once_at_its_original_position(
    producer: RecordingProducer,
) -> None:
    decision = make_rebaseline()
    labels = STREAM_KEY.model_dump(mode="json")
    applied_before = counter("stream_rebaselines", **labels)
    duplicates_before = counter("events_duplicate", topic=topics.REBASELINES)

    async def scenario(feed: Feed) -> None:
        prediction = make_prediction(case_pseudonym="c-1")
        first = await feed.put_v1_event(topics.PREDICTIONS, "c-1", prediction)
        events = [first, await put_decision(feed, decision, offset=4)]
        # Read again (a crash before the forwarder's ack), then published again (a new
        # offset, the same decision): both recognised.
        events += [await put_decision(feed, decision, 4), await put_decision(feed, decision, 5)]
        await wait_until(settled(join.unacked, events), "the decisions handled")
        await join.flush_joined()

    run_join(scenario)
    state = site_stream_prediction_monitors.data[STREAM]
    assert state["rebaseline_id"] == str(decision.rebaseline_id)
    # The position the previous release's stream agent applied it at: recognised after the
    # upgrade as applied.
    assert state["applied"][f"prediction|{topics.REBASELINES}:{LEGACY_PARTITION}"] == [4, 0, 0]
    assert {r.partition for r in producer.to(LABEL_FREE_CHANGELOG)} == {PARTITION}
    assert counter("stream_rebaselines", **labels) - applied_before == 1
    assert counter("events_duplicate", topic=topics.REBASELINES) - duplicates_before == 2
    assert producer.to(topics.DEADLETTER) == []


def test_a_decision_forwarded_under_another_site_is_dead_lettered(
    producer: RecordingProducer,
) -> None:
    decision = make_rebaseline()
    origin = Origin(topics.REBASELINES, LEGACY_PARTITION, 0, STREAM.encode())

    async def scenario(feed: Feed) -> None:
        event = await feed.put(
            SITE_INPUTS,
            b"site-b",
            encode(decision),
            partition=PARTITION,
            headers=forwarded_headers(origin, None),
        )
        await wait_until(settled(join.unacked, [event]), "the decision handled")
        await join.flush_joined()

    run_join(scenario)
    [letter] = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert (letter.source_topic, letter.source_offset) == (topics.REBASELINES, 0)
    assert "site_id" in letter.reason
    assert STREAM not in site_stream_prediction_monitors.data


def test_a_legacy_stream_state_is_adopted_on_its_sites_partition_and_deleted_there(
    producer: RecordingProducer,
) -> None:
    """The restart after review changes the labelled side: a decision on a stream the
    previous release left rejected writes both sides, on the site's partition, and deletes
    the legacy states on the stream key's."""
    rejected, _ = _rejected_stream()
    labelled, label_free = json.loads(json.dumps(rejected.to_states()))
    stream_monitors.data[STREAM] = labelled
    stream_prediction_monitors.data[STREAM] = label_free

    async def scenario(feed: Feed) -> None:
        event = await put_decision(feed, make_rebaseline(), offset=0)
        await wait_until(settled(join.unacked, [event]), "the decision applied")
        await join.flush_joined()

    run_join(scenario)
    [written] = producer.to(LABELLED_CHANGELOG)
    assert written.partition == PARTITION
    assert written.json()["claims_restarts"] == 1
    restarted = StreamMonitor.from_states(written.json(), site_stream_prediction_monitors[STREAM])
    test = restarted.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "consistent"
    [tombstone] = producer.to(LEGACY_CHANGELOG)
    assert (tombstone.partition, tombstone.value) == (LEGACY_PARTITION, None)
    assert STREAM not in stream_monitors.data and STREAM not in stream_prediction_monitors.data


def test_what_the_previous_release_left_unapplied_is_applied_once_at_the_next_assignment(
    producer: RecordingProducer, owning: None
) -> None:
    """The upgrade: the previous release joined three cases (case files written), and its
    stream agent applied the first case's outcome and all three predictions, not the other
    two outcomes, when it stopped. Those two are applied once, before any newer input."""
    position = 0
    cases = []
    for n, label in enumerate(["positive", "negative", "negative"]):
        prediction = make_prediction(case_pseudonym=f"c-{n}", decision="negative")
        followup = make_followup(case_pseudonym=f"c-{n}", label=label)
        case = CaseFile()
        case.add(prediction, RecordPosition(topics.INPUTS, PARTITION, position))
        outcome = case.add(followup, RecordPosition(topics.INPUTS, PARTITION, position + 1))
        case_files.data[case_key(SITE, f"c-{n}")] = case.to_state()
        cases.append((prediction, outcome.outcomes[0]))
        position += 2
    old = StreamMonitor.for_claims({}, site_streams.POLICY)
    for n, (prediction, _outcome) in enumerate(cases):
        at = RecordPosition(topics.INPUTS, PARTITION, 2 * n).joined(0)
        old.observe_prediction(prediction, at)
    old.observe(cases[0][1])  # the old stream agent stopped here
    stream_monitors.data[STREAM], stream_prediction_monitors.data[STREAM] = json.loads(
        json.dumps(old.to_states())
    )
    newer = make_prediction(case_pseudonym="c-new")

    async def scenario(feed: Feed) -> None:
        # The first record read after the upgrade, past the old cases' records (committed):
        # the catch-up runs before it.
        feed._offsets[(topics.INPUTS, PARTITION)] = iter([position])  # type: ignore[assignment]
        event = await feed.put(topics.INPUTS, SITE.encode(), b"", partition=PARTITION)
        await wait_until(settled(join.unacked, [event]), "the first record handled")
        await join.flush_joined()
        # Read again after a restart: nothing more to apply.
        site_streams.catch_ups.assigned()
        site_streams.live.assign()
        again = await feed.put_v1_event(topics.PREDICTIONS, "c-new", newer)
        await wait_until(settled(join.unacked, [again]), "a newer prediction joined")
        await join.flush_joined()

    run_join(scenario)
    # c-0's false negative applied before; c-1's and c-2's true negatives applied now, once.
    assert labelled_counts() == [0, 1, 2, 0]
    assert site_stream_prediction_monitors.data[STREAM]["predictions"] == 4
    assert STREAM not in stream_monitors.data  # adopted, then deleted


def test_the_case_files_are_read_once_per_assignment_and_each_partition_takes_its_part(
    producer: RecordingProducer, owning: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One case, its prediction read from the batches' partition and its follow-up from the
    forwarded v1 records' partition, neither applied to the stream: each part is applied at
    its own partition's first record, from one read of the case files (one read per input
    partition stalled a rebalance with many open cases)."""
    prediction = make_prediction(case_pseudonym="c-0", decision="negative")
    case = CaseFile()
    case.add(prediction, RecordPosition(topics.INPUTS, PARTITION, 0))
    case.add(make_followup(case_pseudonym="c-0"), RecordPosition(SITE_INPUTS, PARTITION, 0))
    case_files.data[case_key(SITE, "c-0")] = case.to_state()
    reads: list[int] = []

    def counted(states: Any) -> site_streams.InputBacklog:
        reads.append(1)
        return site_streams.read_backlog(states)

    monkeypatch.setattr(site_streams.catch_ups, "read_backlog", counted)

    async def scenario(feed: Feed) -> None:
        feed._offsets[(topics.INPUTS, PARTITION)] = iter([5])  # type: ignore[assignment]
        first = await feed.put(topics.INPUTS, SITE.encode(), b"", partition=PARTITION)
        await wait_until(settled(join.unacked, [first]), "the batches' first record handled")
        feed._offsets[(SITE_INPUTS, PARTITION)] = iter([3])  # type: ignore[assignment]
        newer = make_prediction(case_pseudonym="c-new")
        second = await feed.put_v1_event(topics.PREDICTIONS, "c-new", newer)
        await wait_until(settled(join.unacked, [second]), "the v1 records' first record handled")
        await join.flush_joined()

    run_join(scenario)
    assert reads == [1]
    assert site_stream_prediction_monitors.data[STREAM]["predictions"] == 2  # c-0 and c-new
    assert sum(labelled_counts()) == 1  # c-0's outcome, applied at the second partition


def test_a_catch_up_that_fails_still_joins_the_record_that_triggered_it(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised from the record's handling, the failure would have the record acked unjoined."""

    async def failing(*args: Any) -> int:
        raise RuntimeError("a case file the catch-up cannot read")

    monkeypatch.setattr(site_streams.catch_ups, "apply_backlog", failing)
    prediction = make_prediction(case_pseudonym="c-1")

    async def scenario(feed: Feed) -> None:
        event = await feed.put_v1_event(topics.PREDICTIONS, "c-1", prediction)
        await wait_until(settled(join.unacked, [event]), "the prediction joined")
        await join.flush_joined()

    run_join(scenario)
    assert CaseFile.from_state(case_files.data[case_key(SITE, "c-1")]).knows(prediction)
    assert site_stream_prediction_monitors.data[STREAM]["predictions"] == 1


def test_case_files_from_a_flush_cut_short_are_not_applied_ahead_of_the_records_before_them(
    producer: RecordingProducer, owning: None
) -> None:
    """A kill mid-flush: case X's file (its prediction read at offset 4) was sent, case Y's
    (offset 2) was not, nor the stream's state; offset 2 was never committed. Applying X
    from its case file first would have the stream skip Y, older, when its record is read
    again: only what lies below the first offset read is caught up from the case files."""
    x = make_prediction(case_pseudonym="c-x")
    y = make_prediction(case_pseudonym="c-y")
    case = CaseFile()
    case.add(x, RecordPosition(topics.INPUTS, PARTITION, 4))
    case_files.data[case_key(SITE, "c-x")] = case.to_state()

    async def scenario(feed: Feed) -> None:
        feed._offsets[(topics.INPUTS, PARTITION)] = iter([2, 4])  # type: ignore[assignment]
        records = [
            await _put_batch(feed, encode_batch(SITE, _entries(y))),
            await _put_batch(feed, encode_batch(SITE, _entries(x))),  # a replay
        ]
        await wait_until(settled(join.unacked, records), "both records read again")
        await join.flush_joined()

    run_join(scenario)
    assert site_stream_prediction_monitors.data[STREAM]["predictions"] == 2


def _unapplied_predictions(offsets: Iterable[int]) -> None:
    """Case files holding a prediction read at each offset of the batches' partition, which
    no stream applied (a worker of the previous release joined them, or a flush was cut
    short between the case files and the stream's state)."""
    for offset in offsets:
        case = CaseFile()
        case.add(
            make_prediction(case_pseudonym=f"c-{offset}"),
            RecordPosition(topics.INPUTS, PARTITION, offset),
        )
        case_files.data[case_key(SITE, f"c-{offset}")] = case.to_state()


@pytest.mark.parametrize(("committed", "applied"), [(3, 3), (1, 1)])
def test_a_partition_no_record_reaches_is_caught_up_below_its_committed_offset(
    producer: RecordingProducer, owning: None, committed: int, applied: int
) -> None:
    """The quiet-partition timer's path (streams.agents.quiet_partitions), with the group's
    commit given: the case files' inputs below it reach the stream, none at or above it
    (those records are read again, in order)."""
    _unapplied_predictions(range(3))

    async def resume(partitions: Set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {partition: committed for partition in partitions}

    async def scenario(feed: Feed) -> None:
        assert await site_streams.catch_ups.quiet({(topics.INPUTS, PARTITION)}, resume) == 1
        await join.flush_joined()

    run_join(scenario)
    assert site_stream_prediction_monitors.data[STREAM]["predictions"] == applied


def test_a_catch_up_applies_nothing_once_its_partition_may_be_revoked(
    producer: RecordingProducer, owning: None
) -> None:
    _unapplied_predictions(range(2))

    async def scenario(feed: Feed) -> None:
        backlog = site_streams.read_backlog(list(case_files.data.items()))
        pending = backlog[(topics.INPUTS, PARTITION)]
        assert len(pending) == 2
        assert await site_streams.catch_up(pending, 2, lambda: False) == 0
        assert await site_streams.catch_up(pending, 2, lambda: True) == 2  # owned throughout

    run_join(scenario)


def test_a_forwarded_review_restarts_the_rejected_claims_test_and_moves_no_reference(
    producer: RecordingProducer,
) -> None:
    rejected, _ = _rejected_stream()
    labelled, label_free = json.loads(json.dumps(rejected.to_states()))
    site_stream_monitors.data[STREAM] = labelled
    site_stream_prediction_monitors.data[STREAM] = label_free
    review = make_rebaseline(scope="review")
    labels = STREAM_KEY.model_dump(mode="json")
    rebaselines_before = counter("stream_rebaselines", **labels)

    async def scenario(feed: Feed) -> None:
        event = await put_decision(feed, review, offset=7)
        await wait_until(settled(join.unacked, [event]), "the review applied")
        await join.flush_joined()

    run_join(scenario)
    after = site_stream_prediction_monitors.data[STREAM]
    for kept in ("score_reference", "acquisition_reference", "detectors"):
        assert after[kept] == label_free[kept], kept
    written = producer.to(LABELLED_CHANGELOG)[-1].json()
    assert written["claims_restarts"] == 1
    restarted = StreamMonitor.from_states(written, after)
    test = restarted.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "consistent"
    # A review moves no reference: it is not counted as a re-baselining.
    assert counter("stream_rebaselines", **labels) == rebaselines_before
