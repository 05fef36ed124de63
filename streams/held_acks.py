"""Records read but not acked yet: an agent acks them only once what they changed is sent.

Faust commits only acked offsets, after flushing its producer, so a record whose effects
(table writes, routed records) are batched is never committed before those effects are on
their way; a crash in between reads it again, and the effects are idempotent on a replay.
Only these acks count: a record Faust's stream skipped is not acked (see streams.transport).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, TypeVar

from streams.deadletter import DeadLetterNotWritten
from streams.gc_tuning import freeze_survivors
from streams.transport import HandledAcksConsumer, handled_acks

logger = logging.getLogger(__name__)
Flush = Callable[[], Awaitable[None]]
Taken = TypeVar("Taken")


class HeldAcks:
    """The (stream, event) pairs of the records an agent read since its last flush."""

    def __init__(self) -> None:
        self._held: list[tuple[Any, Any]] = []
        self.flushing = asyncio.Lock()
        """One flush at a time (:func:`flush_then_ack`): a state one flush took, sent after
        a later flush's newer one, would be the one the changelog keeps."""

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, stream: Any, event: Any) -> None:
        self._held.append((stream, event))

    def held(self) -> list[tuple[Any, Any]]:
        """The records held so far, oldest first (a copy)."""
        return list(self._held)

    def restore(self, earlier: list[tuple[Any, Any]]) -> None:
        """Hold again, before the rest, records taken for a flush that failed."""
        self._held = [*earlier, *self._held]

    def take(self) -> list[tuple[Any, Any]]:
        """The records held so far, to ack once the flush that covers them is sent."""
        held, self._held = self._held, []
        return held


async def ack_all(held: list[tuple[Any, Any]]) -> None:
    with handled_acks():
        for stream, event in held:
            await stream.ack(event)


async def flush_then_ack(
    held: HeldAcks,
    take: Callable[[], Taken],
    keep: Callable[[Taken], None],
    send: Callable[[Taken], Awaitable[None]],
    restore: Callable[[Taken], None],
    taking: AbstractAsyncContextManager[Any] | None = None,
) -> None:
    """One flush of an agent that batches its effects: ``take`` what changed at the same
    instant as the acks it covers (no await in between), ``keep`` it in the local tables,
    ``send`` it (changelogs, records), then ack.

    Taken together, a table always holds a state that covers at least the records acked or
    being acked. If sending fails, ``restore`` has the next flush send it again and the
    records stay held: nothing is acked past what was not sent. ``taking``: a lock held
    while taking and keeping only, so the agent goes on while the producer takes what was
    taken (it may wait for a request to the broker to be answered first).
    """
    async with held.flushing:
        async with taking or nullcontext():
            acks, taken = held.take(), take()
            keep(taken)
        try:
            await send(taken)
        except BaseException:
            restore(taken)
            held.restore(acks)
            raise
        await ack_all(acks)


async def handle_holding_acks(
    stream: Any, handle: Callable[[Any], Awaitable[None]], held: HeldAcks, flush: Flush, most: int
) -> None:
    """An agent's loop: ``handle`` each record, hold it for ``flush`` to ack, and flush at
    ``most`` held records (the periodic flush, :func:`flush_every`, does the rest).

    A record ``handle`` could neither handle nor dead-letter (:class:`DeadLetterNotWritten`)
    is never acked: the worker stops (its orchestrator restarts it), commits the offsets
    before that record only, and reads it again once restarted.
    """
    stream.enable_acks = False
    # An in-memory channel (Faust's agent test wrapper) reads no Kafka topic.
    HandledAcksConsumer.hold_acks_of(getattr(stream.channel, "topics", ()))
    async for event in stream.events():
        try:
            await handle(event)
        except asyncio.CancelledError:
            raise  # shutting down: left unacked, so it is read again after the restart
        except DeadLetterNotWritten as error:
            logger.critical("stopping the worker, the record is read again after: %s", error)
            await stream.app.crash(error)
            raise
        except BaseException:
            held.hold(stream, event)  # as Faust acks the record an agent crashed on
            raise
        held.hold(stream, event)
        freeze_survivors()  # what the record left is state: out of later collections
        if len(held) >= most:
            await flush()


async def flush_every(interval_s: float, flush: Flush, what: str) -> None:
    """Run ``flush`` every ``interval_s``, as an ``@app.task`` until the worker is gone.

    Not an ``@app.timer``: timers end as soon as the worker starts stopping, and Faust's
    stop then waits for every record read to be acked, which only the flush does.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await flush()
        except Exception:
            logger.exception("sending the %s failed; the next flush tries again", what)
