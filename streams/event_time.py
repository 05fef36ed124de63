"""Event times a worker believes: bounded by when the record carrying them was sent.

A collector with a wrong clock, or a hostile payload, can date an event in year 9999; the
join's event-time watermark would follow it and drop every open case of its partition
past retention. So an event dated more than the allowed clock skew after its record was
sent, or more than the allowed age before, is refused (dead-lettered as
``impossible_value``). "Sent" is the record's Kafka timestamp, or the worker's own clock
if that is earlier: a collector whose clock is wrong stamps its records wrongly too.

>>> bounds = EventTimeBounds(max_skew=timedelta(days=1), max_age=timedelta(days=3650))
>>> sent = datetime(2026, 3, 1, 12, tzinfo=UTC)
>>> bounds.problem(datetime(2026, 3, 1, 11, tzinfo=UTC), sent, now=sent) is None
True
>>> print(bounds.problem(datetime(9999, 12, 31, tzinfo=UTC), sent, now=sent))
... # doctest: +NORMALIZE_WHITESPACE
event_time: 9999-12-31T00:00:00+00:00 is 2912382 days after its record was sent
(2026-03-01T12:00:00+00:00); at most 1 day of clock skew is allowed
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from postmarket.contracts import Problem


@dataclass(frozen=True)
class EventTimeBounds:
    """How far an event's time may lie from when its record was sent."""

    max_skew: timedelta
    """After: clock skew between a collector and the broker (and time zone mistakes)."""
    max_age: timedelta
    """Before: the oldest history a backfill or a replay may bring."""

    def problem(self, event_time: datetime, sent_at: datetime, now: datetime) -> Problem | None:
        """Why ``event_time`` cannot be believed for a record sent at ``sent_at`` and read at
        ``now``, or None."""
        reference = min(sent_at, now)
        if event_time > reference + self.max_skew:
            return Problem(
                "event_time",
                f"{event_time.isoformat()} is {_days(event_time - reference)} after its record "
                f"was sent ({reference.isoformat()}); at most {_days(self.max_skew)} of clock "
                "skew is allowed",
            )
        if event_time < reference - self.max_age:
            return Problem(
                "event_time",
                f"{event_time.isoformat()} is {_days(reference - event_time)} before its record "
                f"was sent ({reference.isoformat()}); history older than "
                f"{_days(self.max_age)} is not accepted",
            )
        return None

    def for_record(self, kafka_timestamp: float | None, now: datetime) -> BelievableTimes:
        """The event times believed for a record of ``kafka_timestamp`` (seconds; see
        :func:`record_sent_at`) read at ``now``: worked out once per record, not once per
        event of its batch."""
        reference = min(record_sent_at(kafka_timestamp, now), now)
        return BelievableTimes(self, reference, reference - self.max_age, reference + self.max_skew)


@dataclass(frozen=True)
class BelievableTimes:
    """The event times believed for one record: from ``earliest`` to ``latest``.

    >>> bounds = EventTimeBounds(max_skew=timedelta(days=1), max_age=timedelta(days=3650))
    >>> sent = datetime(2026, 3, 1, 12, tzinfo=UTC)
    >>> believed = bounds.for_record(sent.timestamp(), now=sent + timedelta(hours=1))
    >>> believed.problem(datetime(2026, 3, 2, 12, tzinfo=UTC)) is None
    True
    >>> print(believed.problem(datetime(2026, 3, 2, 13, tzinfo=UTC)))
    ... # doctest: +NORMALIZE_WHITESPACE
    event_time: 2026-03-02T13:00:00+00:00 is 1 day after its record was sent
    (2026-03-01T12:00:00+00:00); at most 1 day of clock skew is allowed
    """

    bounds: EventTimeBounds
    reference: datetime
    earliest: datetime
    latest: datetime

    def problem(self, event_time: datetime) -> Problem | None:
        """:meth:`EventTimeBounds.problem` of ``event_time`` for this record."""
        if self.earliest <= event_time <= self.latest:
            return None
        return self.bounds.problem(event_time, self.reference, self.reference)


def record_sent_at(kafka_timestamp: float | None, now: datetime) -> datetime:
    """When a record was sent: its Kafka timestamp (seconds), or ``now`` if it has none."""
    if kafka_timestamp is None or kafka_timestamp <= 0:
        return now
    return _from_timestamp(kafka_timestamp)


@functools.lru_cache(maxsize=256)
def _from_timestamp(seconds: float) -> datetime:
    """Converted once per record, not once per event of its batch (datetimes are immutable)."""
    return datetime.fromtimestamp(seconds, UTC)


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    if days >= 1:
        whole = int(days)
        return f"{whole} day" if whole == 1 else f"{whole} days"
    return f"{span.total_seconds() / 3600:.1f} hours"
