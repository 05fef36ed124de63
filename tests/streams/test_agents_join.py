"""The join agent run whole under Faust's test context: outcomes, duplicates, dead letters,
and records acked only once the batch that covers them is flushed."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from postmarket.contracts import DeadLetter, FollowUp, Outcome, Prediction, decode, encode
from postmarket.contracts.batches import EventKind, encode_batch
from postmarket.metrics import STREAM_LABELS
from streams import app as worker
from streams import authentication, site_streams
from streams.agents import join
from streams.app import settings
from streams.casefile import CaseFile, RecordPosition, event_digest
from streams.channels import (
    SITE_INPUTS,
    case_files,
    first_sightings,
    registry,
    site_stream_monitors,
    site_stream_prediction_monitors,
    stream_monitors,
    stream_prediction_monitors,
)
from streams.retention import ScanPacing, case_key, key_partition
from streams.stream_monitor import StreamMonitor
from tests.factories import T0, make_followup, make_prediction, make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until

PREDICTIONS, FOLLOWUPS = topics.PREDICTIONS, topics.FOLLOWUPS
DAY = timedelta(days=1)
STREAM_TABLES = (
    site_stream_monitors,
    site_stream_prediction_monitors,
    stream_monitors,
    stream_prediction_monitors,
)


def _reset_join_state() -> None:
    """Everything the join keeps between records, in its module and in its tables."""
    join.live_cases.clear()
    join.unwritten_cases.clear()
    join.unacked.take()
    site_streams.catch_ups.assigned()
    site_streams.live.clear()
    site_streams.applying = asyncio.Lock()  # bound to each test's event loop
    join.watermark.latest.clear()
    join.sweeps.next_at = 0.0
    join.sweep.clear()
    join.last_forget.clear()
    for table in (case_files, first_sightings, registry, *STREAM_TABLES):
        table.data.clear()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    yield from recording_join(monkeypatch)


def recording_join(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    """The app's producer replaced by a recording one; the join's state fresh and registered."""
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    # Settings default to "required"; signatures are not what these tests are about.
    monkeypatch.setattr(authentication, "AUTHENTICITY_REQUIRED", False)
    _reset_join_state()
    entry = make_registry_entry()
    registry.data[entry.as_key()] = entry.model_dump(mode="json")
    yield recording
    _reset_join_state()


def run_join(scenario: Callable[[Feed], Awaitable[None]]) -> None:
    """Run ``scenario`` against the real join agent, started in a fresh test context."""

    async def main() -> None:
        async with join.join_cases.test_context() as agent:
            await scenario(Feed(agent))
            await join.outcome_queue.hand_over()  # what its task would have sent by now

    asyncio.run(main())


def outcomes_sent(producer: RecordingProducer) -> list[Outcome]:
    return [decode(Outcome, record.value or b"") for record in producer.to(topics.OUTCOMES)]


def dead_letters_sent(producer: RecordingProducer) -> list[DeadLetter]:
    return [decode(DeadLetter, record.value or b"") for record in producer.to(topics.DEADLETTER)]


def predictions_applied(**stream: str) -> int:
    """The predictions the join applied to its streams (all streams, or those whose key
    has the given fields), as their live monitors count them."""
    return sum(
        monitor.predictions
        for key, monitor in site_streams.live.live_monitors.items()
        if all(f"|{value}|" in f"|{key}|" for value in stream.values())
    )


def counter(name: str, **labels: str) -> float:
    return worker.registry.get_sample_value(f"postmarket_{name}_total", labels) or 0.0


@pytest.mark.parametrize(
    "arrival",
    [(PREDICTIONS, FOLLOWUPS), (FOLLOWUPS, PREDICTIONS)],
    ids=["prediction-first", "followup-first"],
)
def test_a_prediction_and_its_followup_emit_one_outcome_in_either_order(
    producer: RecordingProducer, arrival: tuple[str, str]
) -> None:
    prediction = make_prediction(case_pseudonym="c-1", decision="negative")
    followup = make_followup(case_pseudonym="c-1", label="positive")
    event_on = {PREDICTIONS: prediction, FOLLOWUPS: followup}

    async def scenario(feed: Feed) -> None:
        events = [await feed.put_v1_event(topic, "c-1", event_on[topic]) for topic in arrival]
        await wait_until(settled(join.unacked, events), "both records joined")

    run_join(scenario)
    [outcome] = outcomes_sent(producer)
    assert (outcome.prediction_event_id, outcome.decision, outcome.label) == (
        prediction.event_id,
        "negative",
        "positive",
    )
    assert outcome.followup_event_ids == (followup.event_id,)
    # The record that completes the case is the one the outcome was joined at.
    # v1 records reach the join re-keyed by site: their second record.
    assert outcome.joined_at.topic == SITE_INPUTS and outcome.joined_at.offset == 1
    assert producer.to(topics.OUTCOMES)[0].key == outcome.stream.as_key().encode()


@pytest.mark.parametrize("resent_topic", [PREDICTIONS, FOLLOWUPS])
def test_a_resent_event_is_counted_as_a_duplicate_and_not_joined_again(
    producer: RecordingProducer, resent_topic: str
) -> None:
    prediction = make_prediction(case_pseudonym="c-1")
    followup = make_followup(case_pseudonym="c-1")
    resent = prediction if resent_topic == PREDICTIONS else followup
    duplicates_before = counter("events_duplicate", topic=resent_topic)

    changelog = case_files.changelog_topic.get_topic_name()

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_v1_event(PREDICTIONS, "c-1", prediction),
            await feed.put_v1_event(FOLLOWUPS, "c-1", followup),
        ]
        await wait_until(settled(join.unacked, events), "both records joined")
        await join.flush_joined()
        assert len(producer.to(changelog)) == 1  # the case, once for its two new events
        resend = await feed.put_v1_event(resent_topic, "c-1", resent)  # the collector resent it
        await wait_until(settled(join.unacked, [resend]), "the resend read")
        await join.flush_joined()

    run_join(scenario)
    assert len(outcomes_sent(producer)) == 1
    assert counter("events_duplicate", topic=resent_topic) - duplicates_before == 1
    assert len(producer.to(changelog)) == 1  # not written again for the duplicate
    assert predictions_applied() == 1  # the prediction reached its stream once


def test_invalid_input_is_dead_lettered_with_its_reason_and_the_join_goes_on(
    producer: RecordingProducer,
) -> None:
    """A v1 record the ingress could key by its site, invalid all the same: dead-lettered
    as the record its collector sent (records without a site: test_agents_ingress.py)."""
    value = encode(make_followup(case_pseudonym="c-bad"))

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_v1(FOLLOWUPS, b"c-other", value, headers=[("signature", b"sig")]),
            await feed.put_v1_event(PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1")),
            await feed.put_v1_event(FOLLOWUPS, "c-1", make_followup(case_pseudonym="c-1")),
        ]
        await wait_until(settled(join.unacked, events), "all three records handled")

    run_join(scenario)
    [record] = producer.to(topics.DEADLETTER)
    [letter] = dead_letters_sent(producer)
    where = (letter.source_topic, letter.source_partition, letter.source_offset)
    assert where == (FOLLOWUPS, 0, 0)
    assert letter.source_index is None
    assert (letter.reason_code, "case_pseudonym" in letter.reason) == ("schema", True)
    assert letter.original == value
    assert record.headers[0] == ("signature", b"sig")
    assert len(outcomes_sent(producer)) == 1  # the valid case after it still joined


def test_records_are_acked_only_once_their_stream_states_are_flushed(
    producer: RecordingProducer,
) -> None:
    changelog = site_stream_prediction_monitors.changelog_topic.get_topic_name()

    async def scenario(feed: Feed) -> None:
        prediction = await feed.put_v1_event(
            PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1")
        )
        await wait_until(settled(join.unacked, [prediction]), "the prediction joined")
        assert not prediction.message.acked
        assert producer.to(changelog) == []
        await join.flush_joined()
        assert prediction.message.acked

    run_join(scenario)
    # On the site's partition, beside its case files, in the same flush.
    [written] = producer.to(changelog)
    assert written.partition == PARTITION
    [state] = site_stream_prediction_monitors.data.values()
    assert state["predictions"] == 1


def test_more_records_than_a_batch_are_all_joined_and_acked_without_the_timer(
    producer: RecordingProducer,
) -> None:
    """Regression: at ROUTE_BATCH_EVENTS held records the agent called the timer-decorated
    flush, which never returns, and stopped there. The test context runs no timers: only
    the agent's own flush at the batch size can ack the first batch here."""
    cases = 300  # a prediction and a follow-up each: 600 records, more than one batch
    assert 2 * cases > join.FLUSH_EVENTS

    async def scenario(feed: Feed) -> None:
        events: list[Any] = []
        for i in range(cases):
            case = f"c-{i}"
            events.append(
                await feed.put_v1_event(PREDICTIONS, case, make_prediction(case_pseudonym=case))
            )
            events.append(
                await feed.put_v1_event(FOLLOWUPS, case, make_followup(case_pseudonym=case))
            )
        await wait_until(settled(join.unacked, events), "all 600 records joined")
        first_batch, rest = events[: join.FLUSH_EVENTS], events[join.FLUSH_EVENTS :]
        assert all(event.message.acked for event in first_batch)
        assert not any(event.message.acked for event in rest)
        assert len(join.unacked) == len(rest)
        await join.flush_joined()
        assert all(event.message.acked for event in events)

    run_join(scenario)
    joined_cases = [outcome.case_pseudonym for outcome in outcomes_sent(producer)]
    assert joined_cases == [f"c-{i}" for i in range(cases)]
    assert predictions_applied() == cases


def test_a_case_dropped_past_retention_ignores_resends_until_it_is_forgotten(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention 10 days, ids remembered 30 days more; every second record moves the
    watermark (it rests on two events, see streams.retention.Watermark)."""
    monkeypatch.setattr(join, "sweeps", ScanPacing(0.0))  # a sweep at every record
    monkeypatch.setattr(join, "RETENTION", timedelta(days=10))
    monkeypatch.setattr(join, "REMEMBER_DROPPED", timedelta(days=30))
    dropped, later, later_too, much_later, much_later_too = (f"c-{n}" for n in range(5))
    dropped_key = case_key("site-a", dropped)
    old = make_prediction(case_pseudonym=dropped, event_time=T0)
    changelog = case_files.changelog_topic.get_topic_name()
    resent_before = counter("events_duplicate_after_retention", topic=PREDICTIONS)

    async def scenario(feed: Feed) -> None:
        async def feed_prediction(case: str, prediction: Prediction) -> None:
            event = await feed.put_v1_event(PREDICTIONS, case, prediction)
            await wait_until(settled(join.unacked, [event]), f"{case} joined")

        await feed_prediction(dropped, old)
        await feed_prediction(
            later, make_prediction(case_pseudonym=later, event_time=T0 + DAY * 20)
        )
        await join.flush_joined()
        assert "predictions" in case_files.data[dropped_key]  # one later event is not enough
        await feed_prediction(
            later_too, make_prediction(case_pseudonym=later_too, event_time=T0 + DAY * 20)
        )
        await join.flush_joined()
        assert case_files.data[dropped_key] == {
            "state_version": 2,
            "dropped_at": (T0 + DAY * 20).isoformat(),
            "dropped_events": event_digest(str(old.event_id)),
        }
        await feed_prediction(dropped, old)  # resent after its case was dropped
        assert counter("events_duplicate_after_retention", topic=PREDICTIONS) == resent_before + 1
        for case in (much_later, much_later_too):
            await feed_prediction(
                case, make_prediction(case_pseudonym=case, event_time=T0 + DAY * 51)
            )
        await join.flush_joined()
        assert dropped_key not in case_files.data  # 31 days after the drop: forgotten
        await join.flush_joined()

    run_join(scenario)
    tombstones = [r.key for r in producer.to(changelog) if r.value is None]
    assert tombstones == [json.dumps(dropped_key).encode()]
    assert predictions_applied() == 5  # the resend (3) reached no stream


def test_a_sweep_reads_a_slice_after_each_record_and_judges_each_case_as_it_is_then(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(join, "RETENTION", timedelta(days=10))
    monkeypatch.setattr(join, "SWEEP_SLICE", 2)
    monkeypatch.setattr(join, "sweeps", ScanPacing(3600.0))  # one sweep in this test
    old = [f"o-{n}" for n in range(4)]

    def holds_predictions(case: str) -> bool:
        return "predictions" in case_files.data[case_key(SITE, case)]

    async def scenario(feed: Feed) -> None:
        async def put(case: str, event: Prediction | FollowUp) -> None:
            topic = PREDICTIONS if isinstance(event, Prediction) else FOLLOWUPS
            record = await feed.put_v1_event(topic, case, event)
            await wait_until(settled(join.unacked, [record]), f"{case} joined")
            await join.flush_joined()

        join.sweeps.next_at = float("inf")  # no sweep while the cases are filed
        for case in old:
            await put(case, make_prediction(case_pseudonym=case, event_time=T0))
        for case in ("later", "later-too"):  # the watermark 20 days on
            await put(case, make_prediction(case_pseudonym=case, event_time=T0 + DAY * 20))
        join.sweeps.next_at = 0.0
        await put("x-1", make_prediction(case_pseudonym="x-1", event_time=T0 + DAY * 20))
        # The sweep began after that record: its first slice only.
        assert [holds_predictions(case) for case in old] == [False, False, True, True]
        # o-3 gets its follow-up before its slice is read: judged as it is then, kept.
        await put("o-3", make_followup(case_pseudonym="o-3", event_time=T0 + DAY * 20))
        assert [holds_predictions(case) for case in old] == [False, False, False, True]
        for case in ("x-2", "x-3"):
            await put(case, make_prediction(case_pseudonym=case, event_time=T0 + DAY * 20))
        assert join.sweep == []  # done, and not begun again before its interval

    run_join(scenario)
    assert [o.case_pseudonym for o in outcomes_sent(producer)] == ["o-3"]


class RefusingDeadLetters(RecordingProducer):
    """A producer whose dead letters the broker refuses (as it refused a 2.67 MB one)."""

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == topics.DEADLETTER:
            raise RuntimeError("MessageSizeTooLargeError")
        return await super().send(topic, *args, **kwargs)


def test_a_record_whose_dead_letter_cannot_be_sent_is_never_acked_and_stops_the_worker(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = RefusingDeadLetters()
    monkeypatch.setattr(worker.app, "_producer", refusing)
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(worker.app, "crash", crash)

    async def scenario(feed: Feed) -> None:
        bad = await feed.put(SITE_INPUTS, b"site-a", b"not json")  # not from the ingress
        await wait_until(lambda: bool(crashes), "the worker told to stop")
        await join.flush_joined()
        assert not bad.message.acked
        assert all(event.message is not bad.message for _, event in join.unacked.held())

    run_join(scenario)
    [reason] = crashes
    assert "dead letter" in str(reason) and "unknown_source" in str(reason)


def test_a_batch_whose_bad_events_dead_letter_cannot_be_sent_is_never_acked_and_stops_the_worker(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not dead-lettered whole instead (which would ack it): read again after the restart."""
    monkeypatch.setattr(worker.app, "_producer", RefusingDeadLetters())
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(worker.app, "crash", crash)
    good = _entries(make_prediction(case_pseudonym="c-1"))
    value = encode_batch("site-a", [*good, ("followup", "bad", b'{"schema_version": 1}')])

    async def scenario(feed: Feed) -> None:
        batch = await feed.put(topics.INPUTS, b"site-a", value, partition=PARTITION)
        await wait_until(lambda: bool(crashes), "the worker told to stop")
        await join.flush_joined()
        assert not batch.message.acked
        assert all(event.message is not batch.message for _, event in join.unacked.held())

    run_join(scenario)
    [reason] = crashes
    assert "dead letter" in str(reason) and "schema" in str(reason)


def test_one_sweep_drops_the_cases_of_every_owned_partition_each_at_its_own_watermark(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read of the case files serves every partition the worker owns (a read per
    partition read them all as many times); a case is judged by its own partition's
    event time, not by that of the record being processed."""
    monkeypatch.setattr(join, "RETENTION", timedelta(days=10))
    partitions = settings.topic_partitions
    other = next(
        site
        for site in (f"site-{n}" for n in range(100))
        if key_partition(site, partitions) != key_partition("site-a", partitions)
    )
    owned = {key_partition("site-a", partitions), key_partition(other, partitions)}
    monkeypatch.setattr(join, "owned_partitions", lambda topic: owned)
    reads: list[int] = []
    keys = join._case_keys
    monkeypatch.setattr(join, "_case_keys", lambda: reads.append(1) or keys())
    old = make_prediction(site_id=other, case_pseudonym="old", event_time=T0)

    async def scenario(feed: Feed) -> None:
        async def feed_prediction(site: str, case: str, at: datetime) -> None:
            prediction = make_prediction(site_id=site, case_pseudonym=case, event_time=at)
            event = await feed.put_v1_event(PREDICTIONS, case, old if case == "old" else prediction)
            await wait_until(settled(join.unacked, [event]), f"{case} joined")

        join.sweeps.next_at = float("inf")  # the other site's records sweep nothing
        await feed_prediction(other, "old", T0)
        for case in ("later", "later-too"):
            await feed_prediction(other, case, T0 + DAY * 20)
        join.sweeps.next_at = 0.0
        for case in ("a-1", "a-2"):  # site-a's event time: 1 day, within retention of T0
            await feed_prediction("site-a", case, T0 + DAY)
        await join.flush_joined()

    run_join(scenario)
    assert case_files.data[case_key(other, "old")] == {
        "state_version": 2,
        "dropped_at": (T0 + DAY * 20).isoformat(),
        "dropped_events": event_digest(str(old.event_id)),
    }
    assert "predictions" in case_files.data[case_key("site-a", "a-1")]
    assert len(reads) == 1  # site-a's first record: no watermark of its own yet, no read


def test_an_event_dated_far_after_its_record_was_sent_is_dead_lettered_and_expires_nothing(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(join, "sweeps", ScanPacing(0.0))  # a sweep at every record
    open_case, future_case, later_case = (f"c-{n}" for n in range(3))
    now = datetime.now(UTC)

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_v1_event(
                PREDICTIONS, open_case, make_prediction(case_pseudonym=open_case, event_time=now)
            ),
            await feed.put_v1_event(
                PREDICTIONS,
                future_case,
                make_prediction(
                    case_pseudonym=future_case, event_time=datetime(9999, 12, 31, tzinfo=UTC)
                ),
            ),
            await feed.put_v1_event(
                PREDICTIONS,
                later_case,
                make_prediction(case_pseudonym=later_case, event_time=now + timedelta(hours=2)),
            ),
            await feed.put_v1_event(FOLLOWUPS, open_case, make_followup(case_pseudonym=open_case)),
        ]
        await wait_until(settled(join.unacked, events), "all four records handled")
        await join.flush_joined()

    run_join(scenario)
    [letter] = dead_letters_sent(producer)
    assert letter.reason_code == "impossible_value" and "event_time: 9999-12-31" in letter.reason
    [outcome] = outcomes_sent(producer)
    assert outcome.case_pseudonym == open_case
    site_partition = key_partition("site-a", settings.topic_partitions)
    assert (
        join.watermark.at(site_partition) == now
    )  # the second latest: 2 hours ahead is one event alone


# --- Signed batches (pms.inputs.v2): verified once, each event alone, so bad events are
# dead-lettered one by one with their place and the good ones count once.

SITE = "site-a"
PARTITION = key_partition(SITE, settings.topic_partitions)


def _entries(*events: Prediction | FollowUp) -> list[tuple[EventKind, str, bytes]]:
    return [
        ("prediction" if isinstance(e, Prediction) else "followup", str(e.event_id), encode(e))
        for e in events
    ]


async def _put_batch(feed: Feed, value: bytes, headers: Any = None, key: bytes = b"") -> Any:
    return await feed.put(
        topics.INPUTS, key or SITE.encode(), value, partition=PARTITION, headers=headers
    )


async def _join_and_flush(value: bytes, feed: Feed) -> None:
    """Put one batch record, wait until the join handled it, and flush what it changed."""
    record = await _put_batch(feed, value)
    await wait_until(settled(join.unacked, [record]), "the batch joined")
    await join.flush_joined()


def _refused_then_joined(
    producer: RecordingProducer,
    put_refused: Callable[[Feed], Awaitable[Any]],
    put_joined: Callable[[Feed], Awaitable[Any]],
) -> tuple[DeadLetter, Outcome]:
    """Put a batch the join must refuse whole, then a copy of it that it must join, and
    wait until both are handled: the one dead letter and the one outcome they make."""

    async def scenario(feed: Feed) -> None:
        records = [await put_refused(feed), await put_joined(feed)]
        await wait_until(settled(join.unacked, records), "both batches handled")

    run_join(scenario)
    [letter] = dead_letters_sent(producer)
    [outcome] = outcomes_sent(producer)
    return letter, outcome


def test_a_batch_with_a_malformed_a_foreign_and_a_duplicate_event_counts_the_good_ones_once(
    producer: RecordingProducer,
) -> None:
    prediction = make_prediction(case_pseudonym="c-1", decision="negative")
    followup = make_followup(case_pseudonym="c-1", label="positive")
    other = make_prediction(case_pseudonym="c-2")
    entries = _entries(prediction, other, prediction, followup)  # the prediction twice
    malformed: tuple[EventKind, str, bytes] = (
        "followup",
        "bad-1",
        b'{"schema_version": 1, "case_pseudonym": "c-1"}',
    )
    foreign = _entries(make_prediction(case_pseudonym="c-3", site_id="site-b"))[0]
    value = encode_batch(SITE, [entries[0], malformed, *entries[1:3], foreign, entries[3]])
    duplicates_before = counter("events_duplicate", topic=topics.INPUTS)
    stream = dict(zip(STREAM_LABELS, prediction.stream.as_key().split("|"), strict=True))
    missed = {**stream, "decision": "negative", "label": "positive"}
    counted_before = counter("predictions", **stream), counter("outcomes", **missed)

    run_join(functools.partial(_join_and_flush, value))
    [outcome] = outcomes_sent(producer)
    assert (outcome.prediction_event_id, outcome.label) == (prediction.event_id, "positive")
    # The batch's two new predictions and its outcome counted once each, by stream and cell.
    counted = counter("predictions", **stream), counter("outcomes", **missed)
    assert (counted[0] - counted_before[0], counted[1] - counted_before[1]) == (2, 1)
    # Joined at the follow-up's own place in the batch record.
    at = outcome.joined_at
    assert (at.topic, at.partition, at.offset, at.index, at.rank) == (
        topics.INPUTS,
        PARTITION,
        0,
        5,
        0,
    )
    letters = dead_letters_sent(producer)
    assert [(d.source_index, d.reason_code) for d in letters] == [
        (1, "schema"),
        (4, "impossible_value"),
    ]
    assert all((d.source_topic, d.source_offset) == (topics.INPUTS, 0) for d in letters)
    assert orjson.loads(letters[0].original) == orjson.loads(malformed[2])  # that event alone
    assert "site-b" in letters[1].reason
    # A valid event refused later keeps its JSON too (encoded only for its dead letter).
    assert orjson.loads(letters[1].original) == orjson.loads(foreign[2])
    assert counter("events_duplicate", topic=topics.INPUTS) - duplicates_before == 1
    assert predictions_applied() == 2  # the prediction and the other, once each


def test_a_batch_read_again_after_a_crash_sends_the_same_outcomes_at_the_same_places(
    producer: RecordingProducer,
) -> None:
    predictions = [make_prediction(case_pseudonym=f"c-{i}") for i in range(3)]
    followups = [make_followup(case_pseudonym=f"c-{i}") for i in range(3)]
    value = encode_batch(SITE, _entries(*predictions, *followups))

    async def scenario(feed: Feed) -> None:
        record = await _put_batch(feed, value)
        await wait_until(settled(join.unacked, [record]), "the batch joined")
        first = outcomes_sent(producer)
        # The same record at the same offset (its offset was not committed before a crash).
        feed._offsets[(topics.INPUTS, PARTITION)] = iter(range(0, 10))  # type: ignore[assignment]
        again = await _put_batch(feed, value)
        await wait_until(settled(join.unacked, [again]), "the batch read again")
        resent = outcomes_sent(producer)[len(first) :]
        assert [(o.event_id, o.joined_at) for o in resent] == [
            (o.event_id, o.joined_at) for o in first
        ]
        assert [o.joined_at.index for o in first] == [3, 4, 5]

    run_join(scenario)


def _counting_applications(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The join's applications to its streams, each as the number of inputs it held."""
    applications: list[int] = []
    apply = join.apply_to_streams

    async def counted(inputs: Any, partition: int) -> Any:
        applications.append(len(inputs))
        return await apply(inputs, partition)

    monkeypatch.setattr(join, "apply_to_streams", counted)
    return applications


def test_a_batch_goes_to_its_streams_in_one_application(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictions = [make_prediction(case_pseudonym=f"c-{i}") for i in range(3)]
    followups = [make_followup(case_pseudonym=f"c-{i}") for i in range(2)]
    applications = _counting_applications(monkeypatch)

    async def scenario(feed: Feed) -> None:
        record = await _put_batch(feed, encode_batch(SITE, _entries(*predictions, *followups)))
        await wait_until(settled(join.unacked, [record]), "the batch joined")

    run_join(scenario)
    assert applications == [5]  # three predictions, two outcomes
    assert len(outcomes_sent(producer)) == 2
    assert predictions_applied() == 3


def test_an_event_its_streams_refuse_is_dead_lettered_alone_and_the_batch_counts(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch applied at once fails: the streams roll back, and the events are joined
    again one at a time, so only the refused one is dead-lettered and its case unchanged."""
    refused = make_prediction(case_pseudonym="c-2", score=0.123)
    first, last = make_prediction(case_pseudonym="c-1"), make_prediction(case_pseudonym="c-3")
    followups = [make_followup(case_pseudonym=c) for c in ("c-1", "c-2", "c-3")]
    observe_scores = StreamMonitor.observe_scores

    def refusing(monitor: StreamMonitor, entries: Any) -> Any:
        if any(entry.score == refused.score for entry in entries):
            raise ValueError("this score breaks a detector")
        return observe_scores(monitor, entries)

    monkeypatch.setattr(StreamMonitor, "observe_scores", refusing)
    applications = _counting_applications(monkeypatch)
    value = encode_batch(SITE, _entries(first, refused, last, *followups))

    run_join(functools.partial(_join_and_flush, value))
    [letter] = dead_letters_sent(producer)
    assert (letter.source_index, letter.reason_code) == (1, "internal_error")
    assert orjson.loads(letter.original) == orjson.loads(encode(refused))
    # c-2's follow-up joins nothing: its case holds no prediction.
    assert sorted(o.case_pseudonym for o in outcomes_sent(producer)) == ["c-1", "c-3"]
    assert predictions_applied() == 2
    # Once whole (three predictions, three outcomes), then each event that gives the
    # streams anything (c-2's follow-up, joined again alone, finds no prediction).
    assert applications == [6, 1, 1, 1, 1, 1]
    assert str(refused.event_id) not in case_files.data[case_key(SITE, "c-2")]["accepted_at"]


def test_an_event_the_join_fails_on_is_dead_lettered_alone_with_its_traceback(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug on one event of a batch, before its streams: that event is dead-lettered as an
    internal error (the log says where and why), the batch's others join."""
    broken = make_prediction(case_pseudonym="c-2")
    others = [make_prediction(case_pseudonym=c) for c in ("c-1", "c-3")]
    believe = join._believe_event_time

    def failing(event: Any, *args: Any) -> None:
        if event.event_id == broken.event_id:
            raise KeyError("a bug in the join")
        believe(event, *args)

    monkeypatch.setattr(join, "_believe_event_time", failing)
    value = encode_batch(SITE, _entries(others[0], broken, others[1]))

    run_join(functools.partial(_join_and_flush, value))
    [letter] = dead_letters_sent(producer)
    assert (letter.source_index, letter.reason_code) == (1, "internal_error")
    assert orjson.loads(letter.original) == orjson.loads(encode(broken))
    assert predictions_applied() == 2
    [failure] = [r for r in caplog.records if "joining failed on" in r.getMessage()]
    assert failure.exc_info is not None and "a bug in the join" in str(failure.exc_info[1])


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, SigningKey]]:
    """Authenticity required, with one registered key per site."""
    keys = {site: SigningKey.generate() for site in (SITE, "site-b")}
    keyring = SiteKeyring(
        key.registration(site, T0 - timedelta(days=1)) for site, key in keys.items()
    )
    monkeypatch.setattr(authentication, "AUTHENTICITY_REQUIRED", True)
    monkeypatch.setattr(authentication.site_keys, "keyring", keyring)
    yield keys


def test_a_batch_signed_by_another_sites_key_is_refused_whole(
    producer: RecordingProducer, signed: dict[str, SigningKey]
) -> None:
    prediction, followup = (
        make_prediction(case_pseudonym="c-1"),
        make_followup(case_pseudonym="c-1"),
    )
    value = encode_batch(SITE, _entries(prediction, followup))
    forged = signed["site-b"].sign(topics.INPUTS, SITE.encode(), value)
    genuine = signed[SITE].sign(topics.INPUTS, SITE.encode(), value)
    refused_before = (
        worker.registry.get_sample_value(
            "postmarket_events_unauthentic_total", {"site_id": SITE, "reason": "wrong_site"}
        )
        or 0.0
    )

    letter, outcome = _refused_then_joined(
        producer,
        lambda feed: _put_batch(feed, value, forged),
        lambda feed: _put_batch(feed, value, genuine),
    )
    assert (letter.reason_code, letter.source_index, letter.source_offset) == (
        "authenticity",
        None,
        0,
    )
    assert base64.b64decode(base64.b64encode(letter.original)) == value  # the whole record
    assert outcome.joined_at.offset == 1  # the genuine copy joined
    refused = worker.registry.get_sample_value(
        "postmarket_events_unauthentic_total", {"site_id": SITE, "reason": "wrong_site"}
    )
    assert refused == refused_before + 1


def test_a_case_file_from_before_site_keys_is_adopted_at_its_next_event(
    producer: RecordingProducer,
) -> None:
    """Upgrading the worker: a case whose prediction was joined under its bare pseudonym
    (the v1 partitioning) completes when its follow-up arrives, and moves to its site key."""
    prediction = make_prediction(case_pseudonym="c-old", decision="positive")
    before = CaseFile()
    before.add(prediction, RecordPosition(PREDICTIONS, 3, 41))
    case_files.data["c-old"] = before.to_state()
    followup = make_followup(case_pseudonym="c-old", label="positive")

    async def scenario(feed: Feed) -> None:
        event = await feed.put_v1_event(FOLLOWUPS, "c-old", followup)
        await wait_until(settled(join.unacked, [event]), "the follow-up joined")
        await join.flush_joined()

    run_join(scenario)
    [outcome] = outcomes_sent(producer)
    assert outcome.prediction_event_id == prediction.event_id
    assert "c-old" not in case_files.data
    assert CaseFile.from_state(case_files.data[case_key("site-a", "c-old")]).truth is not None
    changelog = case_files.changelog_topic.get_topic_name()
    [tombstone] = [r for r in producer.to(changelog) if r.value is None]
    assert tombstone.key == json.dumps("c-old").encode()
    assert tombstone.partition == key_partition("c-old", settings.topic_partitions)


def test_a_case_changed_by_many_records_is_written_once_per_flush(
    producer: RecordingProducer,
) -> None:
    """One changelog record per changed case per flush, not one per event (issue 17)."""
    events: list[Prediction | FollowUp] = [make_prediction(case_pseudonym="c-1") for _ in range(9)]
    events.append(make_followup(case_pseudonym="c-1"))
    changelog = case_files.changelog_topic.get_topic_name()

    async def scenario(feed: Feed) -> None:
        records = [
            await feed.put_v1_event(
                PREDICTIONS if isinstance(e, Prediction) else FOLLOWUPS, "c-1", e
            )
            for e in events
        ]
        await wait_until(settled(join.unacked, records), "all ten records joined")
        assert producer.to(changelog) == []  # held until the flush, with the acks
        assert not any(record.message.acked for record in records)
        await join.flush_joined()
        assert all(record.message.acked for record in records)

    run_join(scenario)
    [written] = producer.to(changelog)
    assert written.key == json.dumps(case_key(SITE, "c-1")).encode()
    assert written.partition == PARTITION
    case = CaseFile.from_state(orjson.loads(written.value or b""))
    assert (len(case.predictions), len(case.joined)) == (9, 9)
    assert len(outcomes_sent(producer)) == 9  # sent before the flush acked their record


def test_an_unwritten_case_dropped_from_the_live_cache_is_not_lost(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(join, "LIVE_CASES_MAX", 1)
    prediction = make_prediction(case_pseudonym="c-1")

    async def scenario(feed: Feed) -> None:
        records = [await feed.put_v1_event(PREDICTIONS, "c-1", prediction)]
        for other in ("c-2", "c-3"):  # push c-1 out of the cache of live case files
            records.append(
                await feed.put_v1_event(PREDICTIONS, other, make_prediction(case_pseudonym=other))
            )
        await wait_until(settled(join.unacked, records), "the three predictions joined")
        assert case_key(SITE, "c-1") not in join.live_cases
        followup = await feed.put_v1_event(FOLLOWUPS, "c-1", make_followup(case_pseudonym="c-1"))
        await wait_until(settled(join.unacked, [followup]), "the follow-up joined")
        await join.flush_joined()

    run_join(scenario)
    [outcome] = outcomes_sent(producer)
    assert outcome.prediction_event_id == prediction.event_id
    assert CaseFile.from_state(case_files.data[case_key(SITE, "c-1")]).truth is not None


class GatedOutcomes(RecordingProducer):
    """A producer that takes outcomes only once ``opened`` is set (as when the partition's
    previous batch waits for the broker)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == topics.OUTCOMES:
            await self.opened.wait()
        return await super().send(topic, *args, **kwargs)


def test_a_flush_acks_records_only_once_their_outcomes_are_in_the_producer(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The join goes on while its outcomes wait for the producer, but a flush hands them
    over before it acks: an offset is never committed before its outcomes are on their way."""
    gated = GatedOutcomes()
    monkeypatch.setattr(worker.app, "_producer", gated)

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_v1_event(PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1")),
            await feed.put_v1_event(FOLLOWUPS, "c-1", make_followup(case_pseudonym="c-1")),
        ]
        await wait_until(settled(join.unacked, events), "both records joined")
        flush = asyncio.ensure_future(join.flush_joined())
        await asyncio.sleep(0.05)
        assert not flush.done()
        assert not any(event.message.acked for event in events)
        gated.opened.set()
        await flush
        assert all(event.message.acked for event in events)

    run_join(scenario)
    assert len(outcomes_sent(gated)) == 1


class RefusingChangelogOnce(RecordingProducer):
    """A producer that refuses the first case-file changelog record (or batch) sent to it."""

    refused = False

    def _refuse_once(self, topic: str) -> None:
        if topic == case_files.changelog_topic.get_topic_name() and not self.refused:
            self.refused = True
            raise RuntimeError("KafkaTimeoutError")

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        self._refuse_once(topic)
        return await super().send(topic, *args, **kwargs)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self._refuse_once(topic)
        return await super().send_batch(batch, topic, partition=partition)


def test_a_flush_that_fails_acks_nothing_and_the_next_writes_the_cases_again(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = RefusingChangelogOnce()
    monkeypatch.setattr(worker.app, "_producer", refusing)
    changelog = case_files.changelog_topic.get_topic_name()

    async def scenario(feed: Feed) -> None:
        record = await feed.put_v1_event(PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1"))
        await wait_until(settled(join.unacked, [record]), "the prediction joined")
        with pytest.raises(RuntimeError):
            await join.flush_joined()
        assert not record.message.acked
        await join.flush_joined()
        assert record.message.acked

    run_join(scenario)
    [written] = refusing.to(changelog)
    assert written.key == json.dumps(case_key(SITE, "c-1")).encode()


def test_records_read_again_after_a_crash_replay_onto_the_last_written_case(
    producer: RecordingProducer,
) -> None:
    """A crash after the prediction's flush and before the follow-up's: the follow-up, never
    acked, is read again onto the case as last written, and completes it the same way."""
    prediction = make_prediction(case_pseudonym="c-1")
    followup = make_followup(case_pseudonym="c-1")
    changelog = case_files.changelog_topic.get_topic_name()

    async def scenario(feed: Feed) -> None:
        first = await feed.put_v1_event(PREDICTIONS, "c-1", prediction)
        await wait_until(settled(join.unacked, [first]), "the prediction joined")
        await join.flush_joined()
        second = await feed.put_v1_event(FOLLOWUPS, "c-1", followup)
        await wait_until(settled(join.unacked, [second]), "the follow-up joined")
        # The crash: the follow-up's case file and ack never left; the process state goes.
        join.unacked.take()
        join.unwritten_cases.clear()
        join.live_cases.clear()
        site_streams.live.clear()
        feed._offsets[(SITE_INPUTS, PARTITION)] = iter([1])  # type: ignore[assignment]
        feed._offsets[(FOLLOWUPS, 0)] = iter([0])  # type: ignore[assignment]
        again = await feed.put_v1_event(FOLLOWUPS, "c-1", followup)
        await wait_until(settled(join.unacked, [again]), "the follow-up read again")
        await join.flush_joined()

    run_join(scenario)
    first, again = outcomes_sent(producer)
    assert (first.event_id, first.joined_at) == (again.event_id, again.joined_at)
    assert len(producer.to(changelog)) == 2  # the prediction's flush, then the replay's
    assert CaseFile.from_state(case_files.data[case_key(SITE, "c-1")]).truth is not None


def test_the_live_case_files_drop_the_least_recently_used_first(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a plain list kept in order of use, on a seeded mix of hits and loads."""
    monkeypatch.setattr(join, "LIVE_CASES_MAX", 5)
    rng = random.Random(17)  # noqa: S311 - a reproducible order of use
    cases = [f"c-{number}" for number in range(12)]
    for case in cases:
        case_files.data[case_key(SITE, case)] = CaseFile().to_state()
    used: list[str] = []  # least recently used first, as the cache should hold them
    for case in rng.choices(cases, k=400):
        key = case_key(SITE, case)
        loaded, legacy = join._case_file(key, case)
        assert not legacy
        if key in used:
            assert loaded is join.live_cases[key]  # a hit: the very object held
            used.remove(key)
        used = [*used, key][-join.LIVE_CASES_MAX :]
        assert list(join.live_cases) == used


def test_a_batch_on_another_partition_than_its_sites_is_refused_whole(
    producer: RecordingProducer,
) -> None:
    """A producer that chose the partition itself: applied there, the site's cases and
    streams would have a second copy, on whichever worker owns that partition."""
    prediction, followup = (
        make_prediction(case_pseudonym="c-1"),
        make_followup(case_pseudonym="c-1"),
    )
    value = encode_batch(SITE, _entries(prediction, followup))
    elsewhere = (PARTITION + 1) % settings.topic_partitions

    letter, outcome = _refused_then_joined(
        producer,
        lambda feed: feed.put(topics.INPUTS, SITE.encode(), value, partition=elsewhere),
        lambda feed: _put_batch(feed, value),
    )
    assert (letter.reason_code, letter.source_partition, letter.source_index) == (
        "schema",
        elsewhere,
        None,
    )
    assert f"read from partition {elsewhere}; site {SITE!r} is on partition {PARTITION}" in (
        letter.reason
    )
    assert outcome.joined_at.partition == PARTITION  # the copy on the site's partition
    assert predictions_applied() == 1
