"""Records read but not acked yet: an agent acks them only once what they changed is sent.

Faust commits only acked offsets, after flushing its producer, so a record whose effects
(table writes, routed records) are batched is never committed before those effects are on
their way; a crash in between reads it again, and the effects are idempotent on a replay.
"""

from __future__ import annotations

from typing import Any


class HeldAcks:
    """The (stream, event) pairs of the records an agent read since its last flush."""

    def __init__(self) -> None:
        self._held: list[tuple[Any, Any]] = []

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
    for stream, event in held:
        await stream.ack(event)
