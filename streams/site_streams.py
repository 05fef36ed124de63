"""The streams of the sites this worker owns, applied by the join on each site's partition.

The join hands each event's outcomes and new predictions (and the re-baselining decisions
forwarded to it) to :data:`live`, a :class:`~streams.live_streams.LiveStreams` over the
site-stream tables: a stream's state is changelogged on its site's partition, beside its
site's case files, and written by the same flush. This module sends what a flush takes,
keeps the streams' gauges and tallies current, and applies at each assignment what the case
files hold and the streams do not (:mod:`streams.join_backlog`).

States written by the previous release, in the stream-keyed tables, are adopted at each
stream's first change (one worker through the upgrade, as for the case files: see
docs/manufacturer.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from postmarket import topics
from postmarket.contracts import Alert, VersionTally, encode, version_key
from postmarket.contracts.events import JoinPosition, StreamKey
from streams.app import metrics, owned_partitions, settings
from streams.casefile import CaseFile, RecordPosition
from streams.channels import (
    alerts,
    case_files,
    produce,
    produce_batched,
    registry,
    send_table_state,
    send_table_states,
    set_table_state,
    site_stream_monitors,
    site_stream_prediction_monitors,
    stream_monitors,
    stream_prediction_monitors,
    version_tallies,
)
from streams.join_backlog import Order, holds_unapplied, stream_inputs_of
from streams.join_catch_up import CatchUps
from streams.live_streams import (
    Applied,
    LegacyTables,
    LiveStreams,
    Owns,
    StateKind,
    StreamInput,
    TakenStates,
    contents,
    stream_of,
)
from streams.monitor_policy import planned_policy
from streams.retention import key_partition
from streams.stream_monitor import StreamMonitor

POLICY = planned_policy(settings)
metrics.fleet_false_alarm_budget.set(settings.fleet_false_alarms_per_year)
logger = logging.getLogger(__name__)

TABLES: dict[StateKind, Any] = {
    "outcome": site_stream_monitors,
    "prediction": site_stream_prediction_monitors,
}
LEGACY_TABLES: dict[StateKind, Any] = {
    "outcome": stream_monitors,
    "prediction": stream_prediction_monitors,
}
"""The previous release's stream-keyed tables, read until every stream was adopted."""


def _legacy_partition(key: str) -> int:
    return key_partition(key, settings.topic_partitions)


live = LiveStreams(
    POLICY,
    site_stream_monitors,
    site_stream_prediction_monitors,
    registry,
    metrics,
    LegacyTables(stream_monitors, stream_prediction_monitors, _legacy_partition),
)
"""The live monitors of the streams of the sites this worker owns, and their unwritten
states."""
applying = asyncio.Lock()
"""Held while inputs are applied (alerts are awaited before the change is final) and while
a flush takes and sends the states: a flush taken in between would send half an event, and
the event's roll-back would then undo a flush that had already been taken."""


def site_partition(site_id: str) -> int:
    """The partition of a site's inputs, case files and stream states."""
    return key_partition(site_id, settings.topic_partitions)


def owner() -> Owns:
    """Whether this worker owns a stream key now: its site's input partition is assigned."""
    owned = owned_partitions(topics.INPUTS)
    return lambda key: site_partition(StreamKey.from_key(key).site_id) in owned


async def raise_alert(alert: Alert) -> None:
    await produce(alerts, alert.stream.as_key().encode(), encode(alert))


async def apply(inputs: Sequence[tuple[StreamInput, RecordPosition]], partition: int) -> Applied:
    """All or nothing (see :meth:`LiveStreams.apply_all`), states on ``partition``."""
    async with applying:
        return await live.apply_all(inputs, raise_alert, partition)


# --- flushing, with the join's case files -------------------------------------------------


def keep_states(taken: TakenStates) -> None:
    """The tables' own copies of a flush's states; the adopted legacy states deleted."""
    for write in taken.writes:
        set_table_state(TABLES[write.side], write.key, write.state)
    for retired in taken.retired:
        set_table_state(LEGACY_TABLES[retired.side], retired.key, None)


async def send_states(taken: TakenStates) -> None:
    """The changelog records of :func:`keep_states`, then the tallies for the pooled
    stage (which ignores one it has)."""
    for side, table in TABLES.items():
        writes = [(w.partition, w.key, w.state) for w in taken.writes if w.side == side]
        await send_table_states(table, writes)
    for retired in taken.retired:
        table = LEGACY_TABLES[retired.side]
        await send_table_state(table, retired.partition, retired.key, None)
    await send_tallies(taken.tallies)


async def send_tallies(tallies: Sequence[VersionTally]) -> None:
    """Each tally keyed by its version (every site of a version on one partition, by the
    producer's key hash), as record batches where a partition gets many."""
    records = [tally_record(tally) for tally in tallies]
    await produce_batched(version_tallies, records, Counter(part for part, _k, _v in records))


async def send_tally(tally: VersionTally) -> None:
    await send_tallies([tally])


def tally_record(tally: VersionTally) -> tuple[int, bytes, bytes]:
    key = version_key(tally.stream)
    return key_partition(key, settings.topic_partitions), key.encode(), encode(tally)


# --- at each assignment -------------------------------------------------------------------


InputBacklog = dict[tuple[str, int], list[tuple[Order, StreamInput]]]
"""What the case files hold and the streams do not, by input topic and partition."""


def read_backlog(case_states: Iterable[tuple[str, dict[str, Any] | None]]) -> InputBacklog:
    """Every input the case files hold that their streams have not applied
    (:mod:`streams.join_backlog`), by the input partition it was read from, in the join's
    order: one read of every case file per assignment, whichever partitions it brought.

    A case file that cannot be read is logged and skipped, as the previous release's
    stream agent dead-lettered its input: refusing the assignment would stop every site."""
    owns = owner()
    # Each stream's monitor while the case files are read, looked up once per stream, not
    # once per case (None: another worker's stream, which that worker catches up).
    monitors: dict[str, StreamMonitor | None] = {}

    def applied(kind: StateKind, key: str, at: JoinPosition) -> bool:
        if key not in monitors:
            monitors[key] = live.monitor(key, StreamKey.from_key(key)) if owns(key) else None
        monitor = monitors[key]
        return monitor is None or monitor.already_applied(kind, at)

    backlog: InputBacklog = {}
    for key, state in case_states:
        try:
            if holds_unapplied(state, applied):
                for order, item in stream_inputs_of(CaseFile.from_state(state)):
                    backlog.setdefault((order[0], order[1]), []).append((order, item))
        except (ValueError, KeyError, TypeError):
            logger.exception("case file %s unreadable at assignment: not caught up", key)
    for pending in backlog.values():
        pending.sort(key=lambda entry: entry[0])
    return backlog


async def catch_up(
    pending: Sequence[tuple[Order, StreamInput]],
    below: int,
    owned: Callable[[], bool],
) -> int:
    """Apply, in the join's order, the inputs of one input partition's backlog
    (:func:`read_backlog`) below offset ``below``; how many were applied (the streams skip
    by position what they applied since the backlog was read).

    Called with the first offset read there after an assignment (the committed one), before
    that record: nothing newer was applied to these inputs' streams. Below it the case files
    are complete (an offset is committed only once every case file its records changed was
    sent), so this leaves no hole; above it they may not be (a flush cut short sends some
    case files and not others), and a stream skips by position what is older than what it
    applied: those records are read again and applied in order, as replays.

    An input refused is logged and skipped, as the previous release's stream agent
    dead-lettered it. Stops once ``owned`` says the partition may be revoked: a state
    applied after the revoke's flush could overwrite what its next owner writes."""
    total = 0
    for order, item in pending:
        if order[2] >= below:
            continue
        if not owned():
            break
        stream = stream_of(item)
        position = RecordPosition(order[0], order[1], order[2], order[3])
        try:
            done = await apply([(item, position)], site_partition(stream.site_id))
        except Exception:
            logger.exception("not applied at assignment (refused before): %s", stream.as_key())
            continue
        total += done.applied
    return total


catch_ups = CatchUps(lambda: list(contents(case_files).items()), read_backlog, catch_up)
"""Which input partitions' streams took their case files' backlog since the assignment
(see :mod:`streams.join_catch_up`)."""
