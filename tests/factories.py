"""Factories for valid events; tests change one field at a time from these."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from postmarket.contracts import (
    Claim,
    FollowUp,
    Outcome,
    Prediction,
    Rebaseline,
    RegistryEntry,
)
from postmarket.contracts.events import JoinPosition, Label

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def prediction_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "site_id": "site-a",
        "device_id": "dr-screen",
        "device_version": "2.1.0.3",
        "task": "referable_dr",
        "case_pseudonym": "c-case1",
        "event_time": T0,
        "score": 0.81,
        "decision": "positive",
        "operating_threshold": 0.5,
        "collector_version": "0.1.0",
    }
    fields.update(overrides)
    return fields


def ai_output_fields(**overrides: Any) -> dict[str, Any]:
    """An AI device's output as a collector reads it (JSON), before any pseudonymisation."""
    fields: dict[str, Any] = {
        "study_instance_uid": "1.2.3",
        "device_id": "lung-ct",
        "device_version": "1.2.0.4",
        "task": "nodule",
        "score": 0.9,
        "decision": "positive",
        "operating_threshold": 0.5,
        "event_time": "2026-03-01T09:30:00Z",
    }
    fields.update(overrides)
    return fields


def make_prediction(**overrides: Any) -> Prediction:
    return Prediction(**prediction_fields(**overrides))


def make_followup(**overrides: Any) -> FollowUp:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "site_id": "site-a",
        "case_pseudonym": "c-case1",
        "event_time": T0 + timedelta(days=30),
        "label": "positive",
        "source": "pathology",
        "collector_version": "0.1.0",
    }
    fields.update(overrides)
    return FollowUp(**fields)


def make_read(reader: str, read_round: str, label: str, **overrides: Any) -> FollowUp:
    return make_followup(
        source="reader", reader_pseudonym=reader, read_round=read_round, label=label, **overrides
    )


def make_outcome(
    decision: str,
    label: Label,
    offset: int,
    *,
    rank: int = 0,
    partition: int = 0,
    **prediction_overrides: Any,
) -> Outcome:
    """An outcome as the join emits it, completed by follow-up record ``offset``."""
    from streams.casefile import joined_outcome
    from streams.truth import Truth

    prediction = make_prediction(decision=decision, **prediction_overrides)
    truth = Truth(label, "pathology", T0 + timedelta(days=30), (uuid.uuid4(),))
    position = JoinPosition(topic="pms.followups.v1", partition=partition, offset=offset, rank=rank)
    return joined_outcome(prediction, truth, position)


def make_registry_entry(**overrides: Any) -> RegistryEntry:
    fields: dict[str, Any] = {
        "device_id": "dr-screen",
        "device_version": "2.1.0.3",
        "registration_status": "registered",
        "change_class": None,
        "updated_at": T0,
        "claims": (
            Claim(
                task="referable_dr",
                metric="sensitivity",
                value=0.872,
                ci_lower=0.818,
                ci_upper=0.914,
                test_database="pivotal trial",
            ),
            Claim(
                task="referable_dr",
                metric="specificity",
                value=0.907,
                ci_lower=0.877,
                ci_upper=0.932,
                test_database="pivotal trial",
            ),
        ),
    }
    fields.update(overrides)
    return RegistryEntry(**fields)


def make_rebaseline(**overrides: Any) -> Rebaseline:
    """A re-baselining decision for the stream of :func:`make_prediction`."""
    fields: dict[str, Any] = {
        "rebaseline_id": uuid.uuid4(),
        "stream": make_prediction().stream,
        "alert_id": uuid.uuid4(),
        "decided_by": "qa-lead",
        "reason": "new scanner validated",
        "decided_at": T0,
    }
    fields.update(overrides)
    return Rebaseline(**fields)
