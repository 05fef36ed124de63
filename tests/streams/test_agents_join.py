"""The join agent run whole under Faust's test context: outcomes, duplicates, dead letters,
and records acked only once the batch that covers them is flushed."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postmarket import topics
from postmarket.contracts import DeadLetter, Outcome, Prediction, decode, encode
from streams import app as worker
from streams import authentication
from streams.agents import join
from streams.app import settings
from streams.casefile import event_digest
from streams.channels import STREAM_PREDICTIONS, case_files, first_sightings, registry
from streams.retention import case_partition
from streams.routing import StreamPredictions
from tests.factories import T0, make_followup, make_prediction, make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until

PREDICTIONS, FOLLOWUPS = topics.PREDICTIONS, topics.FOLLOWUPS
DAY = timedelta(days=1)


def _reset_join_state() -> None:
    """Everything the join keeps between records, in its module and in its tables."""
    join.live_cases.clear()
    join.unacked.take()
    list(join.router.drain())
    join.watermark.latest.clear()
    join.last_sweep.clear()
    join.last_forget.clear()
    for table in (case_files, first_sightings, registry):
        table.data.clear()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
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

    asyncio.run(main())


def outcomes_sent(producer: RecordingProducer) -> list[Outcome]:
    return [decode(Outcome, record.value or b"") for record in producer.to(topics.OUTCOMES)]


def dead_letters_sent(producer: RecordingProducer) -> list[DeadLetter]:
    return [decode(DeadLetter, record.value or b"") for record in producer.to(topics.DEADLETTER)]


def routed_offsets(producer: RecordingProducer) -> list[int]:
    """The prediction records the join routed to the stream agent, by input offset."""
    return [
        entry.joined_at.offset
        for record in producer.to(STREAM_PREDICTIONS)
        for entry in decode(StreamPredictions, record.value or b"").predictions
    ]


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
        events = [await feed.put_event(topic, "c-1", event_on[topic]) for topic in arrival]
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
    assert outcome.joined_at.topic == arrival[-1] and outcome.joined_at.offset == 0
    assert producer.to(topics.OUTCOMES)[0].key == outcome.stream.as_key().encode()


@pytest.mark.parametrize("resent_topic", [PREDICTIONS, FOLLOWUPS])
def test_a_resent_event_is_counted_as_a_duplicate_and_not_joined_again(
    producer: RecordingProducer, resent_topic: str
) -> None:
    prediction = make_prediction(case_pseudonym="c-1")
    followup = make_followup(case_pseudonym="c-1")
    resent = prediction if resent_topic == PREDICTIONS else followup
    duplicates_before = counter("events_duplicate", topic=resent_topic)

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_event(PREDICTIONS, "c-1", prediction),
            await feed.put_event(FOLLOWUPS, "c-1", followup),
            await feed.put_event(resent_topic, "c-1", resent),  # the collector resent it
        ]
        await wait_until(settled(join.unacked, events), "all three records joined")
        await join.flush_routed()

    run_join(scenario)
    assert len(outcomes_sent(producer)) == 1
    assert counter("events_duplicate", topic=resent_topic) - duplicates_before == 1
    # The case file is written for the two new events only, not for the duplicate.
    assert len(producer.to(case_files.changelog_topic.get_topic_name())) == 2
    assert routed_offsets(producer) == [0]  # the prediction reached its stream once


@pytest.mark.parametrize(
    ("topic", "key", "value", "reason_code", "reason_names"),
    [
        (PREDICTIONS, b"c-bad", b"{not json", "not_json", "<payload>"),
        (PREDICTIONS, b"c-bad", b'{"case_pseudonym": "c-bad"}', "schema", "decision"),
        (
            FOLLOWUPS,
            b"c-other",
            encode(make_followup(case_pseudonym="c-bad")),
            "schema",
            "case_pseudonym",
        ),
        (FOLLOWUPS, b"c-bad", None, "not_json", "no value"),
    ],
    ids=["not-json", "wrong-schema", "key-not-the-case-pseudonym", "no-value"],
)
def test_invalid_input_is_dead_lettered_with_its_reason_and_the_join_goes_on(
    producer: RecordingProducer,
    topic: str,
    key: bytes,
    value: bytes | None,
    reason_code: str,
    reason_names: str,
) -> None:
    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put(topic, key, value, headers=[("signature", b"sig")]),
            await feed.put_event(PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1")),
            await feed.put_event(FOLLOWUPS, "c-1", make_followup(case_pseudonym="c-1")),
        ]
        await wait_until(settled(join.unacked, events), "all three records handled")

    run_join(scenario)
    [record] = producer.to(topics.DEADLETTER)
    [letter] = dead_letters_sent(producer)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (topic, 0, 0)
    assert (letter.reason_code, reason_names in letter.reason) == (reason_code, True)
    assert letter.original == (value or b"")
    assert record.headers == [("signature", b"sig")]
    assert len(outcomes_sent(producer)) == 1  # the valid case after it still joined


def test_records_are_acked_only_once_their_routed_predictions_are_flushed(
    producer: RecordingProducer,
) -> None:
    async def scenario(feed: Feed) -> None:
        prediction = await feed.put_event(PREDICTIONS, "c-1", make_prediction(case_pseudonym="c-1"))
        await wait_until(settled(join.unacked, [prediction]), "the prediction joined")
        assert not prediction.message.acked
        assert producer.to(STREAM_PREDICTIONS) == []
        await join.flush_routed()
        assert prediction.message.acked

    run_join(scenario)
    [routed] = producer.to(STREAM_PREDICTIONS)
    batch = decode(StreamPredictions, routed.value or b"")
    assert [entry.joined_at.offset for entry in batch.predictions] == [0]


def test_more_records_than_a_batch_are_all_joined_and_acked_without_the_timer(
    producer: RecordingProducer,
) -> None:
    """Regression: at ROUTE_BATCH_EVENTS held records the agent called the timer-decorated
    flush, which never returns, and stopped there. The test context runs no timers: only
    the agent's own flush at the batch size can ack the first batch here."""
    cases = 300  # a prediction and a follow-up each: 600 records, more than one batch
    assert 2 * cases > join.ROUTE_BATCH_EVENTS

    async def scenario(feed: Feed) -> None:
        events: list[Any] = []
        for i in range(cases):
            case = f"c-{i}"
            events.append(
                await feed.put_event(PREDICTIONS, case, make_prediction(case_pseudonym=case))
            )
            events.append(await feed.put_event(FOLLOWUPS, case, make_followup(case_pseudonym=case)))
        await wait_until(settled(join.unacked, events), "all 600 records joined")
        first_batch, rest = events[: join.ROUTE_BATCH_EVENTS], events[join.ROUTE_BATCH_EVENTS :]
        assert all(event.message.acked for event in first_batch)
        assert not any(event.message.acked for event in rest)
        assert len(join.unacked) == len(rest)
        await join.flush_routed()
        assert all(event.message.acked for event in events)

    run_join(scenario)
    joined_cases = [outcome.case_pseudonym for outcome in outcomes_sent(producer)]
    assert joined_cases == [f"c-{i}" for i in range(cases)]
    assert sorted(routed_offsets(producer)) == list(range(cases))


def cases_on_partition(partition: int, how_many: int) -> list[str]:
    """Case pseudonyms whose records Kafka's partitioner puts on ``partition``."""
    names = (f"c-{n}" for n in range(10_000))
    on_it = (name for name in names if case_partition(name, settings.topic_partitions) == partition)
    return list(itertools.islice(on_it, how_many))


def test_a_case_dropped_past_retention_ignores_resends_until_it_is_forgotten(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention 10 days, ids remembered 30 days more; every second record moves the
    watermark (it rests on two events, see streams.retention.Watermark)."""
    monkeypatch.setattr(join, "settings", settings.model_copy(update={"join_sweep_interval_s": 0}))
    monkeypatch.setattr(join, "RETENTION", timedelta(days=10))
    monkeypatch.setattr(join, "REMEMBER_DROPPED", timedelta(days=30))
    dropped, later, later_too, much_later, much_later_too = cases_on_partition(0, 5)
    old = make_prediction(case_pseudonym=dropped, event_time=T0)
    changelog = case_files.changelog_topic.get_topic_name()
    resent_before = counter("events_duplicate_after_retention", topic=PREDICTIONS)

    async def scenario(feed: Feed) -> None:
        async def feed_prediction(case: str, prediction: Prediction) -> None:
            event = await feed.put_event(PREDICTIONS, case, prediction)
            await wait_until(settled(join.unacked, [event]), f"{case} joined")

        await feed_prediction(dropped, old)
        await feed_prediction(
            later, make_prediction(case_pseudonym=later, event_time=T0 + DAY * 20)
        )
        assert "predictions" in case_files.data[dropped]  # one later event is not enough
        await feed_prediction(
            later_too, make_prediction(case_pseudonym=later_too, event_time=T0 + DAY * 20)
        )
        assert case_files.data[dropped] == {
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
        assert dropped not in case_files.data  # 31 days after the drop: forgotten
        await join.flush_routed()

    run_join(scenario)
    tombstones = [r.key for r in producer.to(changelog) if r.value is None]
    assert tombstones == [json.dumps(dropped).encode()]
    assert routed_offsets(producer) == [0, 1, 2, 4, 5]  # the resend (3) reached no stream


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
        bad = await feed.put(PREDICTIONS, b"c-1", b"not json")
        await wait_until(lambda: bool(crashes), "the worker told to stop")
        await join.flush_routed()
        assert not bad.message.acked
        assert all(event.message is not bad.message for _, event in join.unacked.held())

    run_join(scenario)
    [reason] = crashes
    assert "dead letter" in str(reason) and "not_json" in str(reason)


def test_a_huge_record_is_dead_lettered_cut_short_with_its_size_and_hash(
    producer: RecordingProducer,
) -> None:
    huge = b'{"site_id": "site-a", "padding": "' + b"x" * 2_000_000 + b'"}'

    async def scenario(feed: Feed) -> None:
        event = await feed.put(PREDICTIONS, b"c-1", huge)
        await wait_until(settled(join.unacked, [event]), "the huge record handled")

    run_join(scenario)
    [letter] = dead_letters_sent(producer)
    assert letter.reason_code == "schema" and "exceeds" in letter.reason
    assert (letter.original_size, letter.truncated) == (len(huge), True)
    assert letter.original == huge[: len(letter.original)] and len(letter.original) == 128 * 1024
    assert letter.original_sha256 == hashlib.sha256(huge).hexdigest()
    [record] = producer.to(topics.DEADLETTER)
    assert len(record.value or b"") < 1024 * 1024  # under the broker's default record limit


def test_an_event_dated_far_after_its_record_was_sent_is_dead_lettered_and_expires_nothing(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(join, "settings", settings.model_copy(update={"join_sweep_interval_s": 0}))
    open_case, future_case, later_case = cases_on_partition(0, 3)
    now = datetime.now(UTC)

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put_event(
                PREDICTIONS, open_case, make_prediction(case_pseudonym=open_case, event_time=now)
            ),
            await feed.put_event(
                PREDICTIONS,
                future_case,
                make_prediction(
                    case_pseudonym=future_case, event_time=datetime(9999, 12, 31, tzinfo=UTC)
                ),
            ),
            await feed.put_event(
                PREDICTIONS,
                later_case,
                make_prediction(case_pseudonym=later_case, event_time=now + timedelta(hours=2)),
            ),
            await feed.put_event(FOLLOWUPS, open_case, make_followup(case_pseudonym=open_case)),
        ]
        await wait_until(settled(join.unacked, events), "all four records handled")
        await join.flush_routed()

    run_join(scenario)
    [letter] = dead_letters_sent(producer)
    assert letter.reason_code == "impossible_value" and "event_time: 9999-12-31" in letter.reason
    [outcome] = outcomes_sent(producer)
    assert outcome.case_pseudonym == open_case
    assert join.watermark.at(0) == now  # the second latest: 2 hours ahead is one event alone
