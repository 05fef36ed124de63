"""The Kafka transport of the workers: Faust's, except that an offset is committed only past
records an agent handled.

Faust acks a record its stream *skips* (one read before a rebalance or a stop, reaching the
stream once flow control is off or the generation has moved on) so that lag does not grow.
An agent that holds its acks until a flush (:mod:`streams.held_acks`) acks the records
before it at that flush, so the skipped record completes a run of acked offsets: the commit
passes it, and after the restart no one reads it again (faust-streaming #527; robinhood
#604). Here a record of a topic whose agent holds its acks is acked only from
:func:`handled_acks`; a skipped one stays unacked, and is read again from the committed
offset, as Faust's seek after every rebalance and every restart does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka

_acking_handled: ContextVar[bool] = ContextVar("acking_handled", default=False)


@contextmanager
def handled_acks() -> Iterator[None]:
    """Acks made inside are of records an agent handled (Faust acks synchronously)."""
    token = _acking_handled.set(True)
    try:
        yield
    finally:
        _acking_handled.reset(token)


class HandledAcksConsumer(faust_aiokafka.Consumer):
    """Faust's consumer; records of :meth:`hold_acks_of` topics are acked only as handled."""

    held_topics: ClassVar[set[str]] = set()
    """Topics whose agents ack through :func:`handled_acks` (one app per process)."""

    @classmethod
    def hold_acks_of(cls, topics: Iterable[str]) -> None:
        cls.held_topics.update(topics)

    def ack(self, message: Any) -> bool:
        if message.topic in self.held_topics and not _acking_handled.get():
            return False  # skipped, not handled: it must be read again
        return bool(super().ack(message))


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`HandledAcksConsumer`."""

    Consumer = HandledAcksConsumer
