"""Signed batches of ``pms.inputs.v2``: the envelope refused whole, each event alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from postmarket.contracts import ContractViolation, FollowUp, Prediction, decode, encode
from postmarket.contracts.batches import (
    MAX_BATCH_BYTES,
    EventKind,
    batch_id_of,
    check_batch_key,
    decode_batch,
    encode_batch,
)
from postmarket.contracts.events import MAX_BATCH_EVENTS, FollowUpEntry, InputBatch, PredictionEntry
from tests.factories import make_followup, make_prediction

SITE = "site-a"


def _batch(*events: Prediction | FollowUp) -> bytes:
    entries: list[tuple[EventKind, str, bytes]] = []
    for event in events:
        kind: EventKind = "prediction" if isinstance(event, Prediction) else "followup"
        entries.append((kind, str(event.event_id), encode(event)))
    return encode_batch(SITE, entries)


def test_a_batch_built_from_encoded_events_is_the_published_contract() -> None:
    prediction, followup = make_prediction(site_id=SITE), make_followup(site_id=SITE)
    raw = _batch(prediction, followup)
    # The whole-batch model (the published JSON Schema) accepts what collectors send.
    model = decode(InputBatch, raw)
    assert model.events == [
        PredictionEntry(kind="prediction", event=prediction),
        FollowUpEntry(kind="followup", event=followup),
    ]
    assert model.batch_id == batch_id_of([str(prediction.event_id), str(followup.event_id)])
    decoded = decode_batch(raw)
    assert [element.event for element in decoded.elements] == [prediction, followup]
    assert [element.index for element in decoded.elements] == [0, 1]
    assert decoded.site_id == SITE and decoded.batch_id == model.batch_id


def test_a_resent_batch_is_the_same_record() -> None:
    prediction = make_prediction(site_id=SITE)
    assert _batch(prediction) == _batch(prediction)


def test_one_bad_event_is_refused_alone() -> None:
    good, other = make_prediction(site_id=SITE), make_prediction(site_id=SITE)
    envelope = orjson.loads(_batch(good, other))
    envelope["events"][1]["event"]["score"] = 1.5
    envelope["events"].insert(1, {"kind": "diagnosis", "event": {}})
    foreign_event = {**envelope["events"][0]["event"], "site_id": "site-b"}
    envelope["events"].append({"kind": "prediction", "event": foreign_event})
    decoded = decode_batch(orjson.dumps(envelope))
    first, unknown_kind, bad_score, foreign = decoded.elements
    assert first.event == good and first.violation is None
    assert unknown_kind.violation is not None and "diagnosis" in str(unknown_kind.violation)
    assert bad_score.violation is not None and bad_score.violation.code == "impossible_value"
    assert "score" in str(bad_score.violation)
    # Each refused event keeps its own JSON, for its dead letter.
    assert orjson.loads(bad_score.original())["score"] == 1.5
    assert foreign.violation is not None and "site-b" in str(foreign.violation)


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (lambda e: e.pop("schema_version"), "schema", "schema_version"),
        (lambda e: e.update(schema_version=1), "unknown_schema_version", "schema_version"),
        (lambda e: e.update(schema_version=True), "unknown_schema_version", "schema_version"),
        (lambda e: e.update(site_id="site a"), "schema", "site_id"),
        (lambda e: e.update(batch_id="not-a-uuid"), "schema", "batch_id"),
        (lambda e: e.update(events=[]), "impossible_value", "events"),
        (lambda e: e.update(events={"kind": "prediction"}), "schema", "events"),
        (lambda e: e.update(extra=1), "schema", "extra"),
    ],
)
def test_an_unusable_envelope_refuses_the_whole_record(
    mutate: Callable[[dict[str, Any]], object], code: str, field: str
) -> None:
    envelope = orjson.loads(_batch(make_prediction(site_id=SITE)))
    mutate(envelope)
    with pytest.raises(ContractViolation) as refused:
        decode_batch(orjson.dumps(envelope))
    assert refused.value.code == code
    assert refused.value.problems[0].field == field


def test_a_batch_keyed_by_another_site_is_refused() -> None:
    with pytest.raises(ContractViolation, match="record key"):
        check_batch_key(decode_batch(_batch(make_prediction(site_id=SITE))), b"site-b")
    check_batch_key(decode_batch(_batch(make_prediction(site_id=SITE))), SITE.encode())


def test_not_json_and_oversized_records_are_refused_before_parsing() -> None:
    with pytest.raises(ContractViolation) as refused:
        decode_batch(b"{not json")
    assert refused.value.code == "not_json"
    with pytest.raises(ContractViolation, match="exceeds"):
        decode_batch(b" " * (MAX_BATCH_BYTES + 1))


def test_encode_batch_refuses_empty_and_oversized_batches() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encode_batch(SITE, [])
    too_many: list[tuple[EventKind, str, bytes]] = [("prediction", str(uuid.uuid4()), b"{}")] * (
        MAX_BATCH_EVENTS + 1
    )
    with pytest.raises(ValueError, match="at most"):
        encode_batch(SITE, too_many)
