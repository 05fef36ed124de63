"""Each input partition's streams caught up with its case files once per assignment.

What the case files hold and the streams do not (:mod:`streams.join_backlog`: what a worker
of the previous release joined and its stream agent had not applied, or a flush cut short
between the two) is applied below the offset the partition resumes at
(:func:`streams.site_streams.catch_up`), before any newer input reaches its streams. At the
partition's first record, with that record's offset; and for a partition no record has
reached since the assignment, from a timer, with the offset its group committed (what the
first record would have been read at): a quiet site's streams would otherwise miss those
outcomes until it sent again, for days at a site that pauses.

A record of a partition whose catch-up the timer has under way waits for it: an input
applied before the older ones would make the streams skip them (they skip by position).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence, Set
from typing import Any

from streams.join_backlog import Order
from streams.live_streams import StreamInput

logger = logging.getLogger(__name__)

Partition = tuple[str, int]
"""An input topic and partition."""
Pending = Sequence[tuple[Order, StreamInput]]
Backlog = dict[Partition, list[tuple[Order, StreamInput]]]
ReadBacklog = Callable[[Iterable[tuple[str, dict[str, Any] | None]]], Backlog]
ApplyBacklog = Callable[[Pending, int, Callable[[], bool]], Awaitable[int]]
"""Apply one partition's backlog below an offset, while the callable says it is still
owned; how many inputs were applied."""
ResumeOffsets = Callable[[Set[Partition]], Awaitable[dict[Partition, int]]]
"""The offset each partition resumes at: its group's commit, else its earliest."""


class CatchUps:
    """Which input partitions' streams took their backlog since the last assignment, and
    the backlog, read once per assignment from every case file (at the first catch-up that
    needs it; each partition's part taken by its own catch-up)."""

    def __init__(
        self,
        case_states: Callable[[], Iterable[tuple[str, dict[str, Any] | None]]],
        read: ReadBacklog,
        apply: ApplyBacklog,
    ) -> None:
        self._case_states = case_states
        self.read_backlog, self.apply_backlog = read, apply
        self.done: set[Partition] = set()
        self._backlog: list[Backlog] = []
        self._under_way: dict[Partition, asyncio.Event] = {}
        self._generation = 0
        """Counts revokes and assignments: a timer's catch-up stops at the next one."""

    def revoked(self) -> None:
        """Partitions are being revoked: a catch-up from the timer stops before its next
        input (the record path's is awaited by the rebalance)."""
        self._generation += 1

    def assigned(self) -> None:
        """A new assignment: every partition caught up again, from the case files as
        recovered (the tables may have been restored from their changelogs)."""
        self.done.clear()
        self._backlog.clear()
        self._generation += 1

    async def before_record(self, partition: Partition, offset: int) -> None:
        """Before a record of ``partition`` at ``offset`` reaches the streams: its
        partition's backlog, below it, if not applied yet (or once the timer applied it)."""
        under_way = self._under_way.get(partition)
        if under_way is not None:
            await under_way.wait()
        if partition in self.done:
            return
        self.done.add(partition)
        await self._catch_up(partition, offset, _always)

    async def quiet(self, owned: Set[Partition], resume_offsets: ResumeOffsets) -> int:
        """Catch up each partition of ``owned`` no record has reached since the assignment,
        below the offset it resumes at; how many were. Call only once the tables are
        recovered (between rebalances). A partition with nothing to catch up needs no
        offset; a revoke or an assignment meanwhile stops it (see :meth:`revoked`)."""
        waiting = set(owned) - self.done
        if not waiting:
            return 0
        backlog = self._backlog_read()
        self.done |= {p for p in waiting if not backlog.get(p)}
        pending = {p for p in waiting if backlog.get(p)}
        if not pending:
            return 0
        generation = self._generation

        def current() -> bool:
            return self._generation == generation

        resume = await resume_offsets(pending)
        caught_up = 0
        for partition in sorted(pending):
            if not current():
                break
            if partition in self.done or partition not in resume:
                continue  # a record came meanwhile, or the broker did not say
            self.done.add(partition)
            finished = self._under_way[partition] = asyncio.Event()
            try:
                await self._catch_up(partition, resume[partition], current)
            finally:
                del self._under_way[partition]
                finished.set()
            caught_up += 1
        return caught_up

    def _backlog_read(self) -> Backlog:
        if not self._backlog:
            self._backlog.append(self.read_backlog(self._case_states()))
        return self._backlog[0]

    async def _catch_up(
        self, partition: Partition, below: int, current: Callable[[], bool]
    ) -> None:
        try:
            pending = self._backlog_read().pop(partition, [])
            applied = await self.apply_backlog(pending, below, current)
        except Exception:
            # Not the record's failure: raised into it, it would be acked unhandled.
            logger.exception("catching the streams up with the case files failed")
            return
        if applied:
            logger.info("applied %d inputs the case files held, not the streams", applied)


def _always() -> bool:
    return True
