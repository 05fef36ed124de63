"""A batch decodes to the same elements whichever path reads it: whole (nearly every batch)
or event by event (a batch with a bad event), with the same dead-letter reasons."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from postmarket.contracts import FollowUp, Prediction, encode
from postmarket.contracts.batches import BatchElement, EventKind, decode_batch, encode_batch
from tests.factories import make_followup, make_prediction

SITE = "site-a"


def _entries(*events: Prediction | FollowUp) -> list[tuple[EventKind, str, bytes]]:
    return [
        ("prediction" if isinstance(e, Prediction) else "followup", str(e.event_id), encode(e))
        for e in events
    ]


def _events() -> list[Prediction | FollowUp]:
    return [
        make_prediction(site_id=SITE, case_pseudonym="c-1"),
        make_followup(site_id=SITE, case_pseudonym="c-1"),
        make_prediction(site_id=SITE, case_pseudonym="c-2", score=0.1, decision="negative"),
    ]


def test_a_valid_batchs_elements_are_the_dataclasss_own() -> None:
    events = _events()
    decoded = decode_batch(encode_batch(SITE, _entries(*events)))
    expected = tuple(BatchElement(index, event) for index, event in enumerate(events))
    assert decoded.elements == expected
    # Built by the dataclass from the very events decoded (their times' tzinfo is pydantic's).
    rebuilt = tuple(BatchElement(e.index, e.event) for e in decoded.elements)
    assert [repr(e) for e in decoded.elements] == [repr(e) for e in rebuilt]
    assert [hash(e) for e in decoded.elements] == [hash(e) for e in rebuilt]
    assert [vars(e) for e in decoded.elements] == [vars(e) for e in rebuilt]
    assert [e.original() for e in decoded.elements] == [encode(e) for e in events]
    with pytest.raises(AttributeError):
        decoded.elements[0].index = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda event: {**event, "score": 1.5},
        lambda event: {**event, "schema_version": 7},
        lambda event: {k: v for k, v in event.items() if k != "event_id"},
        lambda event: {**event, "site_id": "site-b"},
        lambda event: {**event, "unknown": 1},
    ],
    ids=["impossible value", "unknown version", "missing field", "other site", "unknown field"],
)
def test_the_good_events_of_a_batch_with_a_bad_one_decode_as_in_a_valid_batch(
    spoil: Any,
) -> None:
    events = _events()
    valid = encode_batch(SITE, _entries(*events))
    envelope = orjson.loads(valid)
    envelope["events"][1]["event"] = spoil(envelope["events"][1]["event"])
    mixed = decode_batch(orjson.dumps(envelope))
    whole = decode_batch(valid)
    assert [mixed.elements[i] for i in (0, 2)] == [whole.elements[i] for i in (0, 2)]
    refused = mixed.elements[1]
    assert refused.event is None and refused.violation is not None
    assert refused.refused_json == orjson.dumps(envelope["events"][1]["event"])
