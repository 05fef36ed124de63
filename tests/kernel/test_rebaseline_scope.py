"""A ``Rebaseline`` says what it restarts: a re-baselining (scope ``reference``) stays byte
for byte what it was before the scope existed; a review (scope ``review``) states its scope."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest

from postmarket.contracts import ContractViolation, Rebaseline, decode, encode
from tests.factories import make_rebaseline

SCHEMA = Path(__file__).parents[2] / "schemas" / "pms.rebaselines.v1.schema.json"
IDS = {"rebaseline_id": uuid.UUID(int=1), "alert_id": uuid.UUID(int=2)}
BEFORE_THE_SCOPE = (
    b'{"schema_version":1,"rebaseline_id":"00000000-0000-0000-0000-000000000001",'
    b'"stream":{"device_id":"dr-screen","device_version":"2.1.0.3","site_id":"site-a",'
    b'"task":"referable_dr"},"alert_id":"00000000-0000-0000-0000-000000000002",'
    b'"decided_by":"qa-lead","reason":"new scanner validated",'
    b'"decided_at":"2026-03-01T09:30:00Z"}'
)
"""A re-baselining decision as the release before the scope encoded it."""


def test_a_reference_decision_encodes_byte_for_byte_as_before_the_scope() -> None:
    assert encode(make_rebaseline(**IDS, scope="reference")) == BEFORE_THE_SCOPE
    assert encode(make_rebaseline(**IDS)) == BEFORE_THE_SCOPE


def test_a_decision_from_before_the_scope_decodes_as_a_re_baselining() -> None:
    decision = decode(Rebaseline, BEFORE_THE_SCOPE)
    assert decision.scope == "reference"
    assert encode(decision) == BEFORE_THE_SCOPE


def test_a_review_decision_round_trips_stating_its_scope() -> None:
    review = make_rebaseline(**IDS, scope="review")
    raw = encode(review)
    assert json.loads(raw)["scope"] == "review"
    assert decode(Rebaseline, raw) == review


def test_an_unknown_scope_is_a_schema_violation() -> None:
    raw = json.dumps({**json.loads(BEFORE_THE_SCOPE), "scope": "claims"}).encode()
    with pytest.raises(ContractViolation):
        decode(Rebaseline, raw)


def test_the_committed_schema_accepts_both_scopes_and_refuses_another() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(json.loads(BEFORE_THE_SCOPE), schema)
    jsonschema.validate(json.loads(encode(make_rebaseline(scope="review"))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(BEFORE_THE_SCOPE), "scope": "claims"}, schema)
