"""The committed JSON Schemas are what the contracts generate, and they validate real events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from postmarket.contracts import encode
from postmarket.contracts.schemas import render_schemas
from tests.factories import make_prediction

SCHEMA_DIR = Path(__file__).parents[2] / "schemas"


def test_committed_schemas_are_current() -> None:
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert committed == render_schemas(), "run `postmarket schemas export` and commit schemas/"


def test_prediction_schema_accepts_an_encoded_prediction() -> None:
    schema = json.loads((SCHEMA_DIR / "pms.predictions.v1.schema.json").read_text())
    jsonschema.validate(json.loads(encode(make_prediction())), schema)


def test_prediction_schema_rejects_a_score_above_one() -> None:
    schema = json.loads((SCHEMA_DIR / "pms.predictions.v1.schema.json").read_text())
    payload = json.loads(encode(make_prediction()))
    payload["score"] = 1.2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)
