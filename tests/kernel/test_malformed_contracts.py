"""Every event that breaks its published JSON Schema is refused, naming the field.

The malformed events come from the schemas (tests/malformed_events.py), not from the
models that decode them; tests/integration/test_bad_input_keeps_good_data.py sends the
same ones through a real worker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postmarket import topics
from postmarket.contracts import (
    Contract,
    ContractViolation,
    FollowUp,
    Prediction,
    decode,
    encode,
)
from tests.factories import make_followup, make_prediction
from tests.malformed_events import Malformation, fields, load_schema, malformations

CASES: dict[str, tuple[type[Contract], Contract]] = {
    topics.PREDICTIONS: (Prediction, make_prediction()),
    topics.FOLLOWUPS: (FollowUp, make_followup()),
}
REFUSALS = {"schema", "impossible_value", "unknown_schema_version"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def refusal(topic: str, malformation: Malformation) -> ContractViolation:
    contract, valid = CASES[topic]
    raw = json.dumps(malformation.apply(json.loads(encode(valid)))).encode()
    with pytest.raises(ContractViolation) as refused:
        decode(contract, raw)
    return refused.value


def names(violation: ContractViolation, path: str) -> bool:
    """Whether one of the violation's problems is at ``path`` (or inside it)."""
    return any(p.field == path or p.field.startswith(path + ".") for p in violation.problems)


@pytest.mark.parametrize("topic", list(CASES))
def test_each_schema_breaking_field_is_refused_with_its_field_named(topic: str) -> None:
    found = malformations(topic)
    assert len(found) > 50  # every field, several ways each
    for malformation in found:
        violation = refusal(topic, malformation)
        assert violation.code in REFUSALS, malformation.what
        assert names(violation, malformation.path), (malformation.what, str(violation))


@pytest.mark.parametrize("topic", list(CASES))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_value_of_a_type_the_schema_refuses_is_refused(topic: str, data: Any) -> None:
    field = data.draw(st.sampled_from(list(fields(load_schema(topic)))))
    value = data.draw(json_values.filter(lambda v: not field.allows_type_of(v)))
    violation = refusal(topic, Malformation(field.path, "drawn", value))
    assert violation.code in REFUSALS
    assert names(violation, field.path), str(violation)


def test_schema_version_must_be_stated_as_an_integer_on_the_wire() -> None:
    raw = json.loads(encode(make_prediction()))
    for value, code in (
        (True, "schema"),
        (1.0, "unknown_schema_version"),
        (10**30, "unknown_schema_version"),
    ):
        refused = refusal(topics.PREDICTIONS, Malformation("schema_version", "", value))
        assert (refused.code, refused.problems[0].field) == (code, "schema_version")
    del raw["schema_version"]
    with pytest.raises(ContractViolation, match="schema_version: required field is missing"):
        decode(Prediction, json.dumps(raw).encode())
    # Built in code, an event still gets this release's version.
    assert Prediction.model_validate(raw, strict=False).schema_version == 1
