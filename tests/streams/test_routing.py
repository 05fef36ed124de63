"""New predictions routed to the stream agent: one record per stream per batch, in order."""

from __future__ import annotations

from postmarket.contracts import decode, encode
from postmarket.contracts.events import JoinPosition
from streams.routing import MAX_PREDICTIONS_PER_RECORD, StreamPredictions, StreamRouter
from tests.factories import make_prediction


def _position(offset: int, partition: int = 0) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=partition, offset=offset, rank=0)


def test_one_record_per_stream_keeps_the_join_order() -> None:
    router = StreamRouter()
    site_a, site_b = make_prediction(site_id="site-a"), make_prediction(site_id="site-b")
    for offset, prediction in enumerate([site_a, site_b, site_a]):
        router.add(prediction.stream, 0.1 * offset, _position(offset))
    records = dict(router.drain())
    assert set(records) == {site_a.stream.as_key(), site_b.stream.as_key()}
    offsets = [e.joined_at.offset for e in records[site_a.stream.as_key()].predictions]
    assert offsets == [0, 2]


def test_drain_empties_the_router() -> None:
    router = StreamRouter()
    router.add(make_prediction().stream, 0.5, _position(0))
    assert len(list(router.drain())) == 1
    assert list(router.drain()) == []


def test_a_large_batch_is_split_into_records_every_reader_accepts() -> None:
    router = StreamRouter()
    stream = make_prediction().stream
    for offset in range(MAX_PREDICTIONS_PER_RECORD + 1):
        router.add(stream, 0.123456789, _position(10**12 + offset, partition=999))
    records = [record for _, record in router.drain()]
    assert [len(r.predictions) for r in records] == [MAX_PREDICTIONS_PER_RECORD, 1]
    for record in records:
        assert decode(StreamPredictions, encode(record)) == record
