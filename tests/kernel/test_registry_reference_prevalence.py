"""``RegistryEntry.reference_prevalence``: optional, in (0, 1); old records still decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from postmarket import topics
from postmarket.contracts import ContractViolation, RegistryEntry, decode, decode_for_topic, encode
from tests.factories import make_registry_entry

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas/pms.registry.v1.schema.json").read_text())

OLD_RECORD: dict[str, Any] = {  # as published before the field existed
    "schema_version": 1,
    "device_id": "dr-screen",
    "device_version": "2.1.0.3",
    "registration_status": "registered",
    "change_class": None,
    "claims": [
        {
            "task": "referable_dr",
            "metric": "sensitivity",
            "value": 0.872,
            "ci_lower": 0.818,
            "ci_upper": 0.915,
            "test_database": "NIFDC fundus v1",
        }
    ],
    "updated_at": "2026-03-01T09:30:00Z",
}


def test_an_old_record_without_the_field_decodes_as_unknown() -> None:
    raw = json.dumps(OLD_RECORD).encode()
    entry = decode_for_topic(topics.REGISTRY, raw)
    assert isinstance(entry, RegistryEntry)
    assert entry.reference_prevalence is None
    assert entry.schema_version == 1


def test_the_schema_still_accepts_an_old_record() -> None:
    jsonschema.validate(OLD_RECORD, SCHEMA)


def test_a_reference_prevalence_round_trips_and_the_schema_accepts_it() -> None:
    entry = make_registry_entry(reference_prevalence=0.24)
    assert decode(RegistryEntry, encode(entry)) == entry
    jsonschema.validate(json.loads(encode(entry)), SCHEMA)


def test_an_unknown_prevalence_is_left_out_so_workers_from_before_the_field_accept_it() -> None:
    unknown = make_registry_entry()
    payload = json.loads(encode(unknown))
    assert "reference_prevalence" not in payload
    assert "reference_prevalence" not in unknown.model_dump(mode="json")
    jsonschema.validate(payload, SCHEMA)
    assert decode(RegistryEntry, encode(unknown)) == unknown
    known = unknown.model_copy(update={"reference_prevalence": 0.24})
    assert json.loads(encode(known))["reference_prevalence"] == 0.24


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.2])
def test_a_prevalence_outside_zero_one_is_refused_naming_the_field(value: float) -> None:
    raw = json.dumps({**OLD_RECORD, "reference_prevalence": value}).encode()
    with pytest.raises(ContractViolation) as caught:
        decode(RegistryEntry, raw)
    assert caught.value.code == "impossible_value"
    assert [p.field for p in caught.value.problems] == ["reference_prevalence"]
    assert "reference_prevalence" in str(caught.value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**OLD_RECORD, "reference_prevalence": value}, SCHEMA)


@pytest.mark.parametrize("value", ["0.2", True])
def test_a_prevalence_that_is_not_a_number_is_refused(value: object) -> None:
    raw = json.dumps({**OLD_RECORD, "reference_prevalence": value}).encode()
    with pytest.raises(ContractViolation, match="reference_prevalence"):
        decode(RegistryEntry, raw)


def test_building_an_entry_outside_zero_one_fails_naming_the_field() -> None:
    with pytest.raises(ValueError, match="reference_prevalence"):
        make_registry_entry(reference_prevalence=1.0)
