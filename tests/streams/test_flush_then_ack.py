"""One flush of an agent that batches its effects: what changed is taken at the instant the
acks are, kept locally, sent, and only then acked; a failed send acks nothing and leaves
both for the next flush."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.held_acks import HeldAcks, flush_then_ack


class AckingStream:
    """Stands in for a Faust stream: records what it acked."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: str) -> None:
        self.acked.append(event)


class Changes:
    """An agent's effects batched between flushes, with a send that can fail."""

    def __init__(self, fail: bool = False) -> None:
        self.pending: list[str] = []
        self.kept: list[str] = []
        self.sent: list[str] = []
        self.fail = fail

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken

    def keep(self, taken: list[str]) -> None:
        self.kept.extend(taken)

    async def send(self, taken: list[str]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.extend(taken)

    def restore(self, taken: list[str]) -> None:
        self.pending = [*taken, *self.pending]


def _flush(held: HeldAcks, changes: Changes) -> None:
    asyncio.run(flush_then_ack(held, changes.take, changes.keep, changes.send, changes.restore))


def _holding(stream: Any, *events: str) -> HeldAcks:
    held = HeldAcks()
    for event in events:
        held.hold(stream, event)
    return held


def test_records_are_acked_only_after_what_they_changed_is_kept_and_sent() -> None:
    stream, changes = AckingStream(), Changes()
    changes.pending = ["case-1", "case-2"]
    held = _holding(stream, "record-0", "record-1")
    _flush(held, changes)
    assert (changes.kept, changes.sent, stream.acked) == (
        ["case-1", "case-2"],
        ["case-1", "case-2"],
        ["record-0", "record-1"],
    )
    assert len(held) == 0 and changes.pending == []


def test_a_failed_send_acks_nothing_and_the_next_flush_sends_it_again() -> None:
    stream, changes = AckingStream(), Changes(fail=True)
    changes.pending = ["case-1"]
    held = _holding(stream, "record-0")
    with pytest.raises(ConnectionError):
        _flush(held, changes)
    assert stream.acked == [] and changes.sent == []
    changes.pending.append("case-2")  # changed after the failed flush: sent after it
    held.hold(stream, "record-1")
    changes.fail = False
    _flush(held, changes)
    assert changes.sent == ["case-1", "case-2"]
    assert stream.acked == ["record-0", "record-1"]


class HeldSend(Changes):
    """A send that waits until the test lets it go (the producer waiting on the broker)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.go_on = asyncio.Event()

    async def send(self, taken: list[str]) -> None:
        self.waiting.set()
        await self.go_on.wait()
        self.sent.extend(taken)


def test_the_agent_goes_on_while_a_flush_sends_and_the_next_flush_sends_after_it() -> None:
    """``taking`` is held to take and keep only; a second flush waits for the first's send,
    so a newer state never goes out before an older one."""
    stream, changes = AckingStream(), HeldSend()
    taking = asyncio.Lock()
    held = _holding(stream, "record-0")
    changes.pending = ["case-1 v1"]

    async def scenario() -> None:
        def flush() -> asyncio.Task[None]:
            parts = (changes.take, changes.keep, changes.send, changes.restore)
            return asyncio.create_task(flush_then_ack(held, *parts, taking=taking))

        first = flush()
        await changes.waiting.wait()
        # The agent applies the next record meanwhile (times out if the send holds it).
        await asyncio.wait_for(taking.acquire(), timeout=5)
        held.hold(stream, "record-1")
        changes.pending.append("case-1 v2")
        taking.release()
        second = flush()
        await asyncio.sleep(0.01)
        assert changes.sent == [] and stream.acked == []  # neither sent: the first waits
        assert held.held() == [(stream, "record-1")]  # the second has not taken yet
        changes.go_on.set()
        await asyncio.gather(first, second)

    asyncio.run(scenario())
    assert changes.sent == ["case-1 v1", "case-1 v2"]
    assert stream.acked == ["record-0", "record-1"]
