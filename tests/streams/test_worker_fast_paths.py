"""The worker's cheaper paths give what the paths they replace gave: the same objects, the
same partitions, the same producer settings within what the broker takes (issue 17's
profile of the full worker; the timings are in bench/profile_worker.py, never here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Contract, FollowUp, Prediction, decode, encode
from postmarket.contracts.batches import MAX_BATCH_BYTES, InputBatch
from postmarket.contracts.events import JoinPosition, StreamKey, _known_schema_version
from streams import channels
from streams.acquisition import acquisition_categories
from streams.agents import join
from streams.app import CONSUMER_MAX_FETCH_BYTES, PRODUCER_MAX_BATCH_BYTES, create_app, settings
from streams.channels import (
    case_files,
    changelog_record,
    first_sightings,
    registry,
    site_stream_monitors,
)
from streams.event_time import EventTimeBounds, record_sent_at
from streams.join_backlog import prediction_input
from streams.live_streams import contents
from streams.retention import key_partition
from streams.routing import RoutedScore, StreamPredictions
from tests.factories import make_followup, make_prediction
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until
from tests.streams.test_agents_join import recording_join, run_join
from tests.streams.test_casefile_fast_paths import same_model

identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
versions = st.tuples(*[st.integers(0, 999)] * 4).map(lambda v: ".".join(map(str, v)))


@given(identifiers, versions, identifiers, identifiers)
def test_a_predictions_stream_is_the_stream_its_fields_validate_to(
    device: str, version: str, site: str, task: str
) -> None:
    prediction = make_prediction(device_id=device, device_version=version, site_id=site, task=task)
    slow = StreamKey(device_id=device, device_version=version, site_id=site, task=task)
    same_model(prediction.stream, slow)
    assert prediction.stream is prediction.stream  # validated once, shared


def test_a_stream_of_unvalidated_fields_is_refused_as_before() -> None:
    built = Prediction.model_construct(**{**make_prediction().__dict__, "site_id": "a|b"})
    with pytest.raises(ValidationError) as fast:
        _ = built.stream
    with pytest.raises(ValidationError) as slow:
        StreamKey(device_id="dr", device_version="1.0.0.0", site_id="a|b", task="t")
    assert fast.value.errors()[0]["type"] == slow.value.errors()[0]["type"]


@pytest.mark.parametrize("contract", [Prediction, FollowUp, InputBatch])
def test_each_contract_knows_the_schema_version_its_field_says(contract: type[Contract]) -> None:
    assert _known_schema_version(contract) == contract.model_fields["schema_version"].default


def test_an_event_of_another_schema_version_is_still_refused() -> None:
    raw = encode(make_prediction()).replace(b'"schema_version":1', b'"schema_version":2')
    assert b'"schema_version":2' in raw
    with pytest.raises(Exception, match="unknown schema version 2"):
        decode(Prediction, raw)


@given(st.booleans(), st.integers(0, 10**9), st.integers(0, 499))
def test_a_prediction_reaches_its_streams_as_model_construct_built_it(
    with_acquisition: bool, offset: int, index: int
) -> None:
    acquisition = {"manufacturer": "GE", "model": "Revolution"} if with_acquisition else {}
    prediction = make_prediction(acquisition=acquisition)
    at = JoinPosition(topic=topics.INPUTS, partition=1, offset=offset, rank=0, index=index)
    routed = RoutedScore.model_construct(
        score=prediction.score,
        joined_at=at,
        decision=prediction.decision,
        categories=acquisition_categories(prediction.acquisition),
    )
    slow = StreamPredictions.model_construct(stream=prediction.stream, predictions=(routed,))
    fast = prediction_input(prediction, at)
    same_model(fast, slow)
    same_model(fast.predictions[0], slow.predictions[0])


@given(identifiers, versions, identifiers, identifiers)
def test_an_outcomes_partition_is_the_one_the_producers_key_hash_chooses(
    device: str, version: str, site: str, task: str
) -> None:
    key = StreamKey(device_id=device, device_version=version, site_id=site, task=task).as_key()
    partitions = list(range(settings.topic_partitions))
    chosen = DefaultPartitioner()(key.encode(), partitions, partitions)
    assert join.outcome_partition(key) == chosen == key_partition(key, settings.topic_partitions)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    yield from recording_join(monkeypatch)


def test_the_join_sends_each_outcome_to_its_streams_key_partition(
    producer: RecordingProducer,
) -> None:
    prediction = make_prediction(case_pseudonym="c-1")
    followup = make_followup(case_pseudonym="c-1")

    async def scenario(feed: Feed) -> None:
        sent = [
            await feed.put_v1_event(topics.PREDICTIONS, "c-1", prediction),
            await feed.put_v1_event(topics.FOLLOWUPS, "c-1", followup),
        ]
        await wait_until(settled(join.unacked, sent), "both records joined")

    run_join(scenario)
    [record] = producer.to(topics.OUTCOMES)
    key = prediction.stream.as_key()
    assert record.key == key.encode()
    partitions = list(range(settings.topic_partitions))
    assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)


def test_the_producers_batches_are_larger_than_fausts_and_fit_the_brokers_limit(
    tmp_path: Path,
) -> None:
    conf = create_app(Settings(home=tmp_path, worker_id="worker-a")).conf
    assert conf.producer_max_batch_size == PRODUCER_MAX_BATCH_BYTES
    # Kafka's default message.max.bytes (broker) and max.message.bytes (topic): 1 MiB + 12.
    assert 16 * 1024 < PRODUCER_MAX_BATCH_BYTES <= 1024 * 1024 // 2
    assert conf.producer_max_request_size >= PRODUCER_MAX_BATCH_BYTES


def test_a_fetch_brings_many_signed_batches_of_a_partition(tmp_path: Path) -> None:
    """Faust's 1 MiB per partition held three full batches: the join waited between fetches."""
    conf = create_app(Settings(home=tmp_path, worker_id="worker-a")).conf
    assert conf.consumer_max_fetch_size == CONSUMER_MAX_FETCH_BYTES
    assert CONSUMER_MAX_FETCH_BYTES >= 8 * MAX_BATCH_BYTES


@pytest.mark.parametrize("table", [case_files, first_sightings, registry, site_stream_monitors])
def test_a_table_read_without_fausts_hooks_reads_what_the_table_holds(table: Any) -> None:
    table.data.clear()
    try:
        read = contents(table)
        table.data["held"] = {"state": 1}  # written after: the same entries
        for key in ("held", "missing"):
            assert read.get(key) == contents(table).get(key) == table.get(key)
            assert (key in contents(table)) == (key in table)
        assert "missing" not in table.data  # reading a missing key stored nothing either way
        # The in-memory store's own dict: its Mapping.get raised and caught a KeyError for
        # every missing key.
        assert type(read) is dict
    finally:
        table.data.clear()


def test_a_plain_mapping_is_read_as_itself() -> None:
    mapping = {"a": 1}
    assert contents(mapping) is mapping


@given(st.floats(min_value=1e-3, max_value=4e9, allow_nan=False) | st.none() | st.just(0.0))
def test_when_a_record_was_sent_is_its_timestamp_as_before(seconds: float | None) -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    slow = now if seconds is None or seconds <= 0 else datetime.fromtimestamp(seconds, UTC)
    assert record_sent_at(seconds, now) == slow
    assert record_sent_at(seconds, now) == slow  # the second time from the cache


ANY_TIME = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@given(
    ANY_TIME,
    st.floats(min_value=1e-3, max_value=4e9, allow_nan=False) | st.none(),
    ANY_TIME,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40_000)),
)
def test_a_records_believable_times_judge_an_event_time_as_the_bounds_do(
    event_time: datetime, sent: float | None, now: datetime, skew: timedelta, age: timedelta
) -> None:
    """Worked out once per record, the bounds refuse the same event times, saying the same."""
    bounds = EventTimeBounds(max_skew=skew, max_age=age)
    slow = bounds.problem(event_time, record_sent_at(sent, now), now)
    assert bounds.for_record(sent, now).problem(event_time) == slow


STATES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # JSON integers, as orjson writes them
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)
WORKER_TABLES = [name for name, value in vars(channels).items() if type(value).__name__ == "Table"]


@pytest.mark.parametrize("name", WORKER_TABLES)
@given(key=st.text(min_size=1), state=st.none() | STATES)
def test_a_changelog_record_is_the_one_fausts_changelog_topic_prepares(
    name: str, key: str, state: Any
) -> None:
    table = getattr(channels, name)
    changelog = table.changelog_topic
    faust_key, _ = changelog.prepare_key(key, table.key_serializer)
    faust_value = None
    if state is not None:
        faust_value, _ = changelog.prepare_value(state, table.value_serializer)
    assert changelog_record(table, key, state) == (faust_key, faust_value)


def test_every_table_of_the_worker_is_compared_with_faust() -> None:
    assert {"case_files", "site_stream_monitors", "pooled_monitors"} <= set(WORKER_TABLES)
