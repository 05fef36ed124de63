"""The join of predictions with follow-ups for one case, as plain state a table can hold.

Predictions and follow-ups of a case arrive in any order, days to months apart, and may
be resent; a :class:`CaseFile` remembers every event_id it accepted and the input record
it came from, so

- a collector's resend (same event_id, another record) is a duplicate and changes nothing;
- a replay of the very record that was applied (the worker crashed before committing its
  offset) re-emits the outcomes that record completed, with the same ids and positions,
  because whether they reached Kafka before the crash is unknown. Consumers of outcomes
  skip positions they already applied (:class:`~postmarket.contracts.events.JoinPosition`);
- a case dropped past retention keeps only a short digest of each event id it had
  (:meth:`CaseFile.dropped_past_retention`), so a resend months later, or a second
  replay of the same history, is still a duplicate rather than a new case.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from postmarket.contracts.events import (
    FollowUp,
    JoinPosition,
    Label,
    Outcome,
    Prediction,
    stream_key,
)
from postmarket.contracts.trusted import trusted
from streams.truth import Truth, final_truth

STATE_VERSION = 2
DIGEST_CHARS = 16
"""Hex characters of an :func:`event_digest`."""
OUTCOME_NAMESPACE = uuid.UUID("6d1f0c2e-9b7a-4d8e-a0b1-5c3e2f4a6b7c")
"""Outcome ids are derived from the prediction id, so a re-emitted outcome keeps its id."""


@dataclass(frozen=True)
class RecordPosition:
    """Where an input record sits in Kafka."""

    topic: str
    partition: int
    offset: int
    index: int = 0
    """The event's place in its record's batch (``pms.inputs.v2``); 0 for a one-event record."""

    def at_index(self, index: int) -> RecordPosition:
        """``RecordPosition(topic, partition, offset, index)`` of this record's event at
        ``index``, its fields set at once (a frozen dataclass's constructor sets each through
        ``object.__setattr__``; once per event of a batch)."""
        at = _new_position(RecordPosition)
        where = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        _set_attribute(at, "__dict__", {**where, "index": index})
        return at

    def as_list(self) -> list[Any]:
        where = [self.topic, self.partition, self.offset]
        return [*where, self.index] if self.index else where

    def joined(self, rank: int) -> JoinPosition:
        """The position of the ``rank``-th outcome this event completed."""
        return trusted(
            JoinPosition,
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "rank": rank,
                "index": self.index,
            },
        )


@dataclass(frozen=True)
class Accepted:
    """What adding one record did: new or duplicate, and the outcomes to emit."""

    duplicate: bool
    outcomes: tuple[Outcome, ...] = ()
    replayed: bool = False
    """A duplicate read from the very record that was applied (re-send what it emitted)."""
    after_retention: bool = False
    """A duplicate of an event of this case that was dropped past retention."""


_ACCEPTED = Accepted(duplicate=False)
_DUPLICATE = Accepted(duplicate=True)
_DUPLICATE_AFTER_RETENTION = Accepted(duplicate=True, after_retention=True)
"""The answers that carry no outcome, shared (they are frozen): one fewer object per event."""


@dataclass
class CaseFile:
    """Everything known about one case pseudonym."""

    predictions: dict[str, Prediction] = field(default_factory=dict)
    followups: dict[str, FollowUp] = field(default_factory=dict)
    accepted_at: dict[str, RecordPosition] = field(default_factory=dict)
    joined: dict[str, JoinPosition] = field(default_factory=dict)
    truth: Truth | None = None
    dropped: frozenset[str] = frozenset()
    """:func:`event_digest` of every event of this case dropped past retention."""
    dropped_at: datetime | None = None
    """The event-time watermark at the latest drop (when the digests may be forgotten)."""
    event_states: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    """Each event's table state once written (:func:`_event_state`), or loaded as this process
    wrote it, by event id: events are immutable, and a case is written again at each of its
    changes."""

    def add(
        self, event: Prediction | FollowUp, position: RecordPosition, key: str | None = None
    ) -> Accepted:
        """Add a prediction or follow-up read from ``position``; ``key``: its event id as
        text, if the caller has it already (``str`` of a UUID costs more than a look-up).

        All or nothing: the case changes only once everything the record does is known, so
        a worker that keeps case files in memory never holds half an update after an error.
        """
        key = key or str(event.event_id)
        if key in self.accepted_at:
            if self.accepted_at[key] == position:
                outcomes = self._completed_at(position)
                return Accepted(duplicate=True, outcomes=outcomes, replayed=True)
            return _DUPLICATE
        if self.dropped and event_digest(key) in self.dropped:
            return _DUPLICATE_AFTER_RETENTION
        predictions, followups, truth = self.predictions, self.followups, self.truth
        if isinstance(event, Prediction):
            predictions = {**predictions, key: event}
        else:
            followups = {**followups, key: event}
            # The first final truth stands: outcomes already emitted rest on it.
            truth = truth or final_truth(list(followups.values()))
        joined, outcomes = self._complete(predictions, truth, position)
        self.accepted_at[key] = position
        self.predictions, self.followups, self.truth, self.joined = (
            predictions,
            followups,
            truth,
            joined,
        )
        return Accepted(duplicate=False, outcomes=outcomes) if outcomes else _ACCEPTED

    def copy(self) -> CaseFile:
        """A copy :meth:`add` can change leaving this one as it is (it replaces every field
        but ``accepted_at``, which it extends): the join changes a copy, and keeps it only
        once the streams took what the change gave them."""
        # dataclasses.replace without its per-field look-ups and __init__ (measured: 1.5 us,
        # 0.45 here; once per event). Equal to replace's (test_casefile_fast_paths).
        copied = _new_case_file(CaseFile)
        copied.__dict__.update(self.__dict__)
        copied.accepted_at = dict(self.accepted_at)
        return copied

    def knows(self, event: Prediction | FollowUp, key: str | None = None) -> bool:
        """Whether this event (by its id; ``key``: that id as text, if known) was accepted
        already, from any record."""
        key = key or str(event.event_id)
        return key in self.accepted_at or (bool(self.dropped) and event_digest(key) in self.dropped)

    def dropped_past_retention(self, watermark: datetime) -> CaseFile:
        """This case once retention has passed at ``watermark``: its events are dropped (what
        they left unresolved is :func:`~streams.retention.expiry`), their ids kept as digests.
        """
        digests = self.dropped | {event_digest(key) for key in self.accepted_at}
        return CaseFile(dropped=frozenset(digests), dropped_at=watermark)

    @property
    def awaiting_truth(self) -> int:
        """Predictions of this case not yet joined with final truth."""
        return len(self.predictions) - len(self.joined)

    @property
    def last_event_time(self) -> datetime | None:
        """Latest event time in the case, for retention."""
        times = [p.event_time for p in self.predictions.values()]
        times += [f.event_time for f in self.followups.values()]
        return max(times, default=None)

    def _complete(
        self, predictions: dict[str, Prediction], truth: Truth | None, position: RecordPosition
    ) -> tuple[dict[str, JoinPosition], tuple[Outcome, ...]]:
        """The joins after ``position`` and the outcomes it completes (nothing is changed)."""
        if truth is None:
            return self.joined, ()
        pending = [(k, p) for k, p in predictions.items() if k not in self.joined]
        if not pending:
            return self.joined, ()
        joined = dict(self.joined)
        outcomes = []
        for rank, (key, prediction) in enumerate(pending):
            at = position.joined(rank)
            joined[key] = at
            outcomes.append(joined_outcome(prediction, truth, at, key))
        return joined, tuple(outcomes)

    def _completed_at(self, position: RecordPosition) -> tuple[Outcome, ...]:
        if self.truth is None:
            return ()
        completed = [
            (join, self.predictions[key])
            for key, join in self.joined.items()
            if (join.topic, join.partition, join.offset, join.index)
            == (position.topic, position.partition, position.offset, position.index)
        ]
        completed.sort(key=lambda pair: pair[0].rank)
        return tuple(joined_outcome(p, self.truth, join) for join, p in completed)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state for a Faust table (changelogged, so it survives restarts)."""
        dropped = _dropped_state(self.dropped, self.dropped_at)
        if dropped and not self.accepted_at:
            # Only the digests: dropped cases outnumber open ones for years, in every
            # worker's memory (the in-memory table store) and in every sweep's scan.
            return {"state_version": STATE_VERSION, **dropped}
        return {
            "state_version": STATE_VERSION,
            # Defaults (empty acquisition fields, the schema version) are left out: a third
            # of an open case's bytes; validating the state on load puts them back.
            "predictions": [self._event_state(k, p) for k, p in self.predictions.items()],
            "followups": [self._event_state(k, f) for k, f in self.followups.items()],
            "accepted_at": {k: v.as_list() for k, v in self.accepted_at.items()},
            "joined": {k: join_state(v) for k, v in self.joined.items()},
            "truth": _truth_state(self.truth),
            **dropped,  # only once something was dropped: an open case pays nothing for it
        }

    def _event_state(self, key: str, event: Prediction | FollowUp) -> dict[str, Any]:
        """The event's state, dumped once: the states written share it (nothing mutates a
        table state; :meth:`from_state` only reads it)."""
        state = self.event_states.get(key)
        if state is None:
            state = self.event_states[key] = _event_state(event)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> CaseFile:
        if not state:
            return cls()
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"case file state version {state.get('state_version')!r} unknown")
        digests = state.get("dropped_events", "")
        dropped = (
            frozenset(digests[i : i + DIGEST_CHARS] for i in range(0, len(digests), DIGEST_CHARS))
            if digests
            else _NOTHING_DROPPED
        )
        if "predictions" not in state:  # dropped past retention: only the digests are left
            return cls(dropped=dropped, dropped_at=dropped_at_in(state))
        # The events are validated again, though this worker wrote them: from a dict,
        # pydantic's parse of their ids and times costs what building them unchecked does
        # (measured: 3.9 us a prediction either way), so skipping it would buy nothing.
        event_states: dict[str, dict[str, Any]] = {}
        followups = _events_by_id(_validate_followup, state["followups"], event_states)
        return cls(
            predictions=_events_by_id(_validate_prediction, state["predictions"], event_states),
            followups=followups,
            accepted_at={k: RecordPosition(*v) for k, v in state["accepted_at"].items()},
            joined={k: _join_from_state(v) for k, v in state["joined"].items()},
            truth=_truth_from_state(state["truth"], followups),
            dropped=dropped,
            dropped_at=dropped_at_in(state),
            event_states=event_states,
        )


class EventState(dict[str, Any]):
    """An event's table state as :func:`_event_state` dumped it in this process: a dict,
    marked so that a case loaded from it writes it again as it is instead of dumping its
    event again. A state read back from the changelog is a plain dict, dumped again (an
    older release may have written it otherwise)."""

    __slots__ = ()


EventT = TypeVar("EventT", Prediction, FollowUp)


def _events_by_id(
    validate: Callable[..., EventT],
    states: list[dict[str, Any]],
    event_states: dict[str, dict[str, Any]],
) -> dict[str, EventT]:
    """Each event state validated, by event id: ``Model.model_validate(state, strict=False)``
    is this very call behind a Python wrapper (measured: 0.4 us of 2.7 a prediction). Those
    this process dumped are kept in ``event_states`` (dumping one again cost 2.3 us)."""
    events: dict[str, EventT] = {}
    for state in states:
        event = validate(state, strict=False)
        key = str(event.event_id)
        events[key] = event
        if type(state) is EventState:
            event_states[key] = state
    return events


_validate_prediction = Prediction.__pydantic_validator__.validate_python
_validate_followup = FollowUp.__pydantic_validator__.validate_python
_NOTHING_DROPPED: frozenset[str] = frozenset()


def awaiting_truth_in(state: dict[str, Any] | None) -> int:
    """:attr:`CaseFile.awaiting_truth` read straight from table state, without validating
    every event again (the backlog gauge reads every case file on a timer)."""
    if not state:
        return 0
    return len(state.get("predictions", ())) - len(state.get("joined", ()))


def last_event_time_in(state: dict[str, Any]) -> datetime | None:
    """:attr:`CaseFile.last_event_time` read straight from table state (the retention
    sweep reads every case file; validating each again cost a second per 20,000)."""
    times = [
        datetime.fromisoformat(event["event_time"])
        for events in (state.get("predictions", ()), state.get("followups", ()))
        for event in events
    ]
    return max(times, default=None)


def dropped_at_in(state: dict[str, Any]) -> datetime | None:
    """:attr:`CaseFile.dropped_at` read straight from table state (None: nothing dropped)."""
    at = state.get("dropped_at")
    return datetime.fromisoformat(at) if at else None


def event_digest(event_id: str) -> str:
    """A short digest of an event id: 16 hex characters instead of 36, for the ids a case
    keeps after its events are dropped. Collisions only matter within one case's few ids."""
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_CHARS // 2).hexdigest()


def _dropped_state(dropped: frozenset[str], at: datetime | None) -> dict[str, Any]:
    """The digests as one string: a list of short strings took four times the memory."""
    if not dropped or at is None:
        return {}
    return {"dropped_at": at.isoformat(), "dropped_events": "".join(sorted(dropped))}


def _event_state(event: Prediction | FollowUp) -> dict[str, Any]:
    """``event.model_dump(mode="json", exclude_defaults=True)``, as an :class:`EventState`:
    the very call model_dump makes, without its Python wrapper (measured: 2.75 us a
    prediction, 2.3 this way)."""
    return EventState(
        event.__pydantic_serializer__.to_python(event, mode="json", exclude_defaults=True)
    )


def join_state(join: JoinPosition) -> dict[str, Any]:
    """``join.model_dump(mode="json")``, key for key and in the same order, without the
    serializer's per-call cost (its index left out at 0, as its serializer does)."""
    state: dict[str, Any] = {
        "topic": join.topic,
        "partition": join.partition,
        "offset": join.offset,
        "rank": join.rank,
    }
    if join.index != 0:
        state["index"] = join.index
    return state


_set_attribute = object.__setattr__
_new_case_file = object.__new__
_new_position = object.__new__


def outcome_id(prediction_id: uuid.UUID, text: str | None = None) -> uuid.UUID:
    """``uuid.uuid5(OUTCOME_NAMESPACE, str(prediction_id))``, without re-checking the bits
    uuid.UUID's constructor checks (RFC 4122 section 4.3, as uuid.uuid5 computes it).
    ``text``: ``str(prediction_id)``, if the caller has it already."""
    # SHA-1 because RFC 4122's name-based version 5 is defined by it: an id, not a secret.
    name = _OUTCOME_NAMESPACE_BYTES + (text or str(prediction_id)).encode()
    digest = hashlib.sha1(name, usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & _CLEAR_VARIANT_AND_VERSION) | _VARIANT_RFC_4122 | _VERSION_5
    built = _new_uuid(uuid.UUID)
    _set_attribute(built, "int", value)
    _set_attribute(built, "is_safe", _UNKNOWN_SAFETY)
    return built


_OUTCOME_NAMESPACE_BYTES = OUTCOME_NAMESPACE.bytes
_CLEAR_VARIANT_AND_VERSION = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_VARIANT_RFC_4122 = 0x8000 << 48
_VERSION_5 = 5 << 76
_new_uuid = object.__new__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def _truth_state(truth: Truth | None) -> dict[str, Any] | None:
    if truth is None:
        return None
    return {
        "label": truth.label,
        "source": truth.source,
        "time": truth.time.isoformat(),
        "followup_event_ids": [str(i) for i in truth.followup_event_ids],
        "blinded_reads": list(truth.blinded_reads) if truth.blinded_reads else None,
    }


def _truth_from_state(state: dict[str, Any] | None, followups: dict[str, FollowUp]) -> Truth | None:
    if state is None:
        return None
    return Truth(
        label=state["label"],
        source=state["source"],
        time=datetime.fromisoformat(state["time"]),
        # The ids of the case's own follow-ups, parsed already (the same values).
        followup_event_ids=tuple(
            followups[i].event_id if i in followups else uuid.UUID(i)
            for i in state["followup_event_ids"]
        ),
        blinded_reads=_read_pair(state.get("blinded_reads")),
    )


_JOIN_KEYS = frozenset({"topic", "partition", "offset", "rank"})
_JOIN_KEYS_INDEXED = _JOIN_KEYS | {"index"}


def _join_from_state(state: dict[str, Any]) -> JoinPosition:
    """``JoinPosition.model_validate(state, strict=False)``: built directly from the layout
    :func:`join_state` writes (a topic name and integers at least 0), validated otherwise."""
    keys = state.keys()
    topic, index = state.get("topic"), state.get("index", 0)
    numbers = (state.get("partition"), state.get("offset"), state.get("rank"), index)
    if (
        (keys == _JOIN_KEYS or keys == _JOIN_KEYS_INDEXED)
        and type(topic) is str
        and 0 < len(topic) <= _MAX_TOPIC_CHARS
        and all(type(n) is int and n >= 0 for n in numbers)
    ):
        values = {
            "topic": topic,
            "partition": numbers[0],
            "offset": numbers[1],
            "rank": numbers[2],
            "index": index,
        }
        return trusted(JoinPosition, values, frozenset(keys))
    return JoinPosition.model_validate(state, strict=False)


_MAX_TOPIC_CHARS = 249


def _read_pair(reads: list[Label] | None) -> tuple[Label, Label] | None:
    return (reads[0], reads[1]) if reads else None


def joined_outcome(
    prediction: Prediction, truth: Truth, joined_at: JoinPosition, key: str | None = None
) -> Outcome:
    """The outcome event of one prediction with its final truth (``key``: the prediction's
    event id as text, if known).

    Built without validating again: every field comes from a validated prediction, truth
    and position (the join applies it to its stream as it is).
    """
    return trusted(
        Outcome,
        {
            "schema_version": _OUTCOME_SCHEMA_VERSION,
            "event_id": outcome_id(prediction.event_id, key),
            "stream": stream_key(
                prediction.device_id,
                prediction.device_version,
                prediction.site_id,
                prediction.task,
            ),
            "case_pseudonym": prediction.case_pseudonym,
            "prediction_event_id": prediction.event_id,
            "prediction_time": prediction.event_time,
            "score": prediction.score,
            "decision": prediction.decision,
            "operating_threshold": prediction.operating_threshold,
            "acquisition": prediction.acquisition,
            "label": truth.label,
            "truth_source": truth.source,
            "truth_time": truth.time,
            "followup_event_ids": truth.followup_event_ids,
            "study_design": prediction.study_design,
            "joined_at": joined_at,
            "blinded_reads": truth.blinded_reads,
        },
        _OUTCOME_FIELDS_SET,
    )


_OUTCOME_SCHEMA_VERSION = Outcome.model_fields["schema_version"].default
_OUTCOME_FIELDS_SET = frozenset(Outcome.model_fields) - {"schema_version"}
"""What model_construct counted as set: every field but the version, a default it filled."""
