"""New predictions routed to the stream agent: one record per stream per batch, in order."""

from __future__ import annotations

from postmarket.contracts import decode, encode
from postmarket.contracts.codec import MAX_EVENT_BYTES
from postmarket.contracts.events import AcquisitionFeatures, JoinPosition
from streams.routing import MAX_PREDICTIONS_PER_RECORD, StreamPredictions, StreamRouter
from tests.factories import make_prediction


def _position(offset: int, partition: int = 0) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=partition, offset=offset, rank=0)


def test_one_record_per_stream_keeps_the_join_order() -> None:
    router = StreamRouter()
    site_a, site_b = make_prediction(site_id="site-a"), make_prediction(site_id="site-b")
    for offset, prediction in enumerate([site_a, site_b, site_a]):
        router.add(prediction.stream, prediction, _position(offset))
    records = dict(router.drain())
    assert set(records) == {site_a.stream.as_key(), site_b.stream.as_key()}
    offsets = [e.joined_at.offset for e in records[site_a.stream.as_key()].predictions]
    assert offsets == [0, 2]


def test_drain_empties_the_router() -> None:
    router = StreamRouter()
    prediction = make_prediction()
    router.add(prediction.stream, prediction, _position(0))
    assert len(list(router.drain())) == 1
    assert list(router.drain()) == []


def test_a_routed_prediction_keeps_its_decision_and_acquisition_categories() -> None:
    router = StreamRouter()
    features = AcquisitionFeatures(manufacturer="GE", model="Revolution", kvp=120.0)
    prediction = make_prediction(decision="negative", acquisition=features)
    router.add(prediction.stream, prediction, _position(0))
    [(_, record)] = router.drain()
    [routed] = decode(StreamPredictions, encode(record)).predictions
    assert (routed.score, routed.decision) == (prediction.score, "negative")
    assert routed.categories == {
        "manufacturer": "GE",
        "model": "Revolution",
        "kvp_band": "101_120kv",
    }


def test_a_large_batch_is_split_into_records_every_reader_accepts() -> None:
    router = StreamRouter()
    longest = "M" * 64  # the longest manufacturer and model names the contracts allow
    features = AcquisitionFeatures(
        manufacturer=longest, model=longest, slice_thickness_band="about_5mm", kvp=140.0
    )
    prediction = make_prediction(score=0.123456789, acquisition=features)
    for offset in range(MAX_PREDICTIONS_PER_RECORD + 1):
        router.add(prediction.stream, prediction, _position(10**12 + offset, partition=999))
    records = [record for _, record in router.drain()]
    assert [len(r.predictions) for r in records] == [MAX_PREDICTIONS_PER_RECORD, 1]
    for record in records:
        assert len(encode(record)) <= MAX_EVENT_BYTES
        assert decode(StreamPredictions, encode(record)) == record


def test_records_of_a_failed_flush_go_back_before_the_newer_ones() -> None:
    router = StreamRouter()
    prediction = make_prediction()
    router.add(prediction.stream, prediction, _position(0))
    router.add(prediction.stream, prediction, _position(1))
    unsent = list(router.drain())
    router.add(prediction.stream, prediction, _position(2))
    router.restore(unsent)
    [(_key, record)] = list(router.drain())
    assert [e.joined_at.offset for e in record.predictions] == [0, 1, 2]
