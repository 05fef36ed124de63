"""Agents: decode, call the pure join, emit. No business rule lives here."""

from __future__ import annotations

import logging
from typing import Any

from postmarket.contracts import (
    ContractViolation,
    FollowUp,
    Prediction,
    Problem,
    decode_for_topic,
    encode,
)
from streams.app import app, metrics
from streams.casefile import CaseFile
from streams.channels import case_files, case_inputs, deadletter, outcomes
from streams.deadletter import dead_letter

logger = logging.getLogger(__name__)


@app.agent(case_inputs)
async def join_cases(stream: Any) -> None:
    """Join each case's predictions with its follow-ups; emit outcomes when truth is final."""
    async for event in stream.events():
        message = event.message
        metrics.events_consumed.labels(message.topic).inc()
        try:
            await _join(message.topic, message.key, event.value)
        except ContractViolation as violation:
            await _dead_letter(message, event.value, violation)
        except Exception as error:
            # A bug must not lose the record nor stop the agent: keep it for replay.
            logger.exception("join failed on %s[%d]@%d", *_where(message))
            problem = Problem("<worker>", f"{type(error).__name__} while joining")
            await _dead_letter(
                message, event.value, ContractViolation("record", "internal_error", [problem])
            )


async def _join(topic: str, key: bytes | None, value: bytes | None) -> None:
    case_event = _case_event(topic, key, value)
    case = CaseFile.from_state(case_files.get(case_event.case_pseudonym))
    accepted = case.add(case_event)
    if accepted.duplicate:
        metrics.events_duplicate.labels(topic).inc()
        return
    case_files[case_event.case_pseudonym] = case.to_state()
    for outcome in accepted.outcomes:
        await outcomes.send(key=outcome.stream.as_key().encode(), value=encode(outcome))
        stream_key = outcome.stream
        metrics.outcomes.labels(
            stream_key.device_id,
            stream_key.device_version,
            stream_key.site_id,
            stream_key.task,
            outcome.decision,
            outcome.label,
        ).inc()


async def _dead_letter(message: Any, value: bytes | None, violation: ContractViolation) -> None:
    topic, partition, offset = _where(message)
    record = dead_letter(topic, partition, offset, value or b"", violation)
    await deadletter.send(key=topic.encode(), value=encode(record))
    metrics.events_deadlettered.labels(topic, violation.code).inc()


def _where(message: Any) -> tuple[str, int, int]:
    return str(message.topic), int(message.partition), int(message.offset)


@app.timer(interval=10.0)
async def count_cases_awaiting_truth() -> None:
    """Refresh the follow-up backlog gauge from this worker's share of the join table."""
    awaiting = sum(CaseFile.from_state(state).awaiting_truth for state in case_files.values())
    metrics.cases_awaiting_truth.set(awaiting)


def _case_event(topic: str, key: bytes | None, value: bytes | None) -> Prediction | FollowUp:
    """Decode a record of the case topics; its key must be its case pseudonym (co-partitioning)."""
    contract = "Prediction" if topic.startswith("pms.predictions") else "FollowUp"
    if value is None:
        raise ContractViolation(contract, "not_json", [Problem("<payload>", "record has no value")])
    decoded = decode_for_topic(topic, value)
    if not isinstance(decoded, Prediction | FollowUp):
        raise TypeError(f"{topic} is not a case topic")
    if key != decoded.case_pseudonym.encode():
        reason = f"record key {key!r} is not the event's case_pseudonym (breaks co-partitioning)"
        raise ContractViolation(contract, "schema", [Problem("<key>", reason)])
    return decoded
