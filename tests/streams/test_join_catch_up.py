"""Catching up the streams of partitions no record reaches (streams.join_catch_up): from the
offset the group resumes at, once, and never interleaved with a record of the partition.

The backlog and its application are stand-ins here (what they do is tested in
test_join_streams and, against a real broker, test_upgrade_real_broker): these tests are
about who catches up which partition, when, and below which offset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Set
from typing import Any

from streams.join_catch_up import Backlog, CatchUps, Partition, Pending

QUIET: Partition = ("pms.inputs.v2", 1)
BUSY: Partition = ("pms.inputs.v2", 2)
EMPTY: Partition = ("pms.inputs.v2", 3)
RESUME = {QUIET: 40, BUSY: 70, EMPTY: 90}


class Recorder:
    """Stand-ins that record what happened, in order: ``("caught up", partition, below,
    offset)`` per input caught up, ``("record", partition)`` per record. A catch-up and an
    offset read each yield to the loop, as applying to streams and asking the broker do."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.reads = 0
        self.started = 0
        """Inputs whose application began."""
        self.asked: list[set[Partition]] = []

    def read(self, _states: Iterable[tuple[str, dict[str, Any] | None]]) -> Backlog:
        self.reads += 1
        # Each partition's backlog holds inputs at offsets 0 and 1; the partition itself
        # stands in for each.
        return {
            p: [((p[0], p[1], offset, 0, 0, 0), _stand_in(p)) for offset in (0, 1)]
            for p in (QUIET, BUSY)
        }

    async def apply(self, pending: Pending, below: int, current: Callable[[], bool]) -> int:
        applied = 0
        for order, partition in pending:
            if not current():
                break
            self.started += 1
            await asyncio.sleep(0.01)
            self.log.append(("caught up", partition, below, order[2]))
            applied += 1
        return applied

    async def resume_offsets(self, partitions: Set[Partition]) -> dict[Partition, int]:
        self.asked.append(set(partitions))
        await asyncio.sleep(0.01)
        return {p: RESUME[p] for p in partitions}

    async def record(self, catch_ups: CatchUps, partition: Partition, offset: int) -> None:
        """A record as the join handles it: its partition caught up first."""
        await catch_ups.before_record(partition, offset)
        self.log.append(("record", partition))


def _stand_in(partition: Partition) -> Any:
    return partition


def _of(log: list[tuple[Any, ...]], partition: Partition) -> list[tuple[Any, ...]]:
    return [entry for entry in log if entry[1] == partition]


def _caught_up(partition: Partition, below: int) -> list[tuple[Any, ...]]:
    return [("caught up", partition, below, offset) for offset in (0, 1)]


def _run(scenario: Callable[[Recorder, CatchUps], Coroutine[Any, Any, None]]) -> Recorder:
    recorder = Recorder()
    asyncio.run(scenario(recorder, CatchUps(lambda: [], recorder.read, recorder.apply)))
    return recorder


def test_a_quiet_partition_is_caught_up_below_its_resume_offset_once() -> None:
    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        assert await catch_ups.quiet({QUIET, EMPTY}, recorder.resume_offsets) == 1
        assert await catch_ups.quiet({QUIET, EMPTY}, recorder.resume_offsets) == 0
        await recorder.record(catch_ups, QUIET, 40)  # its first record: nothing more

    recorder = _run(scenario)
    assert recorder.log == [*_caught_up(QUIET, 40), ("record", QUIET)]
    # Offsets asked only for the partition with a backlog; the case files read once.
    assert recorder.asked == [{QUIET}]
    assert recorder.reads == 1


def test_a_record_arriving_during_its_partitions_catch_up_waits_for_it() -> None:
    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        timer = asyncio.create_task(catch_ups.quiet({QUIET}, recorder.resume_offsets))
        while not catch_ups.done:  # the offsets read, the catch-up under way
            await asyncio.sleep(0.001)
        await recorder.record(catch_ups, QUIET, 40)
        await timer

    assert _run(scenario).log == [*_caught_up(QUIET, 40), ("record", QUIET)]


def test_a_partition_whose_record_came_while_the_offsets_were_read_is_left_to_it() -> None:
    """The record catches its partition up below its own offset; the timer, back from the
    broker, does not apply the backlog a second time (nor after the record)."""

    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        timer = asyncio.create_task(catch_ups.quiet({QUIET, BUSY}, recorder.resume_offsets))
        while not recorder.asked:
            await asyncio.sleep(0.001)
        await recorder.record(catch_ups, BUSY, 70)
        assert await timer == 1

    recorder = _run(scenario)
    # (The two partitions' catch-ups may interleave: their streams are apart.)
    assert _of(recorder.log, BUSY) == [*_caught_up(BUSY, 70), ("record", BUSY)]
    assert _of(recorder.log, QUIET) == _caught_up(QUIET, 40)


def test_a_new_assignment_while_the_offsets_are_read_stops_the_timers_catch_up() -> None:
    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        timer = asyncio.create_task(catch_ups.quiet({QUIET}, recorder.resume_offsets))
        while not recorder.asked:
            await asyncio.sleep(0.001)
        catch_ups.assigned()
        assert await timer == 0
        assert await catch_ups.quiet({QUIET}, recorder.resume_offsets) == 1  # the next tick

    recorder = _run(scenario)
    assert recorder.log == _caught_up(QUIET, 40)
    assert recorder.reads == 2  # read again for the new assignment


def test_a_partition_the_broker_gives_no_offset_for_waits_for_the_next_tick() -> None:
    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        async def silent(partitions: Set[Partition]) -> dict[Partition, int]:
            return {}

        assert await catch_ups.quiet({QUIET}, silent) == 0
        assert QUIET not in catch_ups.done
        assert await catch_ups.quiet({QUIET}, recorder.resume_offsets) == 1

    assert _run(scenario).log == _caught_up(QUIET, 40)


def test_a_revoke_stops_the_timers_catch_up_before_its_next_input() -> None:
    """What it applies after the revoke's flush would be written by no one, or later over
    the partition's next owner."""

    async def scenario(recorder: Recorder, catch_ups: CatchUps) -> None:
        timer = asyncio.create_task(catch_ups.quiet({QUIET, BUSY}, recorder.resume_offsets))
        while not recorder.started:
            await asyncio.sleep(0.001)
        catch_ups.revoked()
        await timer

    # The input under way when the revoke began is applied (the revoke's flush, waiting for
    # it, writes it); nothing after it.
    assert _run(scenario).log == [("caught up", QUIET, 40, 0)]
