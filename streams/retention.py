"""How long a case waits for its truth, and which worker partition may forget it.

A case's events are dropped once the worker's event-time watermark has moved past its last
event by the retention period: a prediction still without truth then counts as expired
(verification bias is evidence too), a follow-up without prediction as unmatched. The
case keeps a digest of each event id for a further period (``join_dedupe_days``), so a
resend or a second replay of its events is not counted again; then it is forgotten. A
case's state is written to the changelog partition its own records use, Kafka's default
partitioner applied to its site (the inputs are keyed by site), so the worker that owns
that partition drops it, with the partition's own watermark, whichever record it is
processing when the sweep is due.
"""

from __future__ import annotations

import functools
from bisect import insort
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from kafka.partitioner.default import murmur2

from postmarket.contracts.events import StreamKey
from streams.casefile import CaseFile, awaiting_truth_in, dropped_at_in, last_event_time_in


def key_partition(key: str, partitions: int) -> int:
    """The partition of a record's key: murmur2, as the Java client (and Faust) computes it."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def case_key(site_id: str, case_pseudonym: str) -> str:
    """A case file's table key: its site first, as case pseudonyms are made per site and the
    inputs are partitioned by site."""
    return f"{site_id}|{case_pseudonym}"


def is_legacy_case_key(key: str) -> bool:
    """Whether a case file's key is from before the inputs were keyed by site (its bare
    pseudonym: identifiers hold no ``|``)."""
    return "|" not in key


def case_partition(key: str, partitions: int) -> int:
    """The partition of a case file's records: its site's. A key from before the inputs
    were keyed by site (the bare pseudonym) is on its pseudonym's partition."""
    if is_legacy_case_key(key):
        return key_partition(key, partitions)
    return site_partition(key.partition("|")[0], partitions)


def misplaced(site_id: str, partition: int, partitions: int) -> str | None:
    """Why a record of ``site_id`` read from ``partition`` must not be applied there (None
    if it may): a site's cases and streams live on its partition only, and a record placed
    elsewhere by its producer would start a second copy of them, on another worker.

    >>> misplaced("site-a", 3, 8) is None
    True
    >>> misplaced("site-a", 0, 8)
    "read from partition 0; site 'site-a' is on partition 3"
    """
    home = site_partition(site_id, partitions)
    if partition == home:
        return None
    return f"read from partition {partition}; site {site_id!r} is on partition {home}"


@functools.lru_cache(maxsize=4096)
def site_partition(site_id: str, partitions: int) -> int:
    """:func:`key_partition` of a site, hashed once per site: the backlog gauge asks for the
    partition of every case awaiting truth (murmur2 in Python: the gauge took 90 ms per
    30,000 such cases, 23 this way)."""
    return key_partition(site_id, partitions)


@dataclass(frozen=True)
class Expiry:
    """What dropping one case file leaves unresolved, for the metrics."""

    streams_without_truth: tuple[StreamKey, ...]
    """The stream of each prediction dropped without truth."""
    followups_without_prediction: int


def expiry(case: CaseFile, watermark: datetime, retention: timedelta) -> Expiry | None:
    """The case's expiry if it is past retention at ``watermark``, else None."""
    last = case.last_event_time
    if last is None or watermark - last <= retention:
        return None
    unmatched = len(case.followups) if not case.predictions else 0
    unjoined = tuple(p.stream for k, p in case.predictions.items() if k not in case.joined)
    return Expiry(unjoined, unmatched)


def past_retention(state: dict[str, Any] | None, watermark: datetime, retention: timedelta) -> bool:
    """Whether a case file's table state is past retention at ``watermark`` (read without
    loading the case: the sweep reads every case file, and most are kept)."""
    if not state or "predictions" not in state:  # nothing, or only dropped digests
        return False
    last = last_event_time_in(state)
    return last is not None and watermark - last > retention


def forgettable(state: dict[str, Any] | None, watermark: datetime, remember: timedelta) -> bool:
    """Whether a case file's table state holds only the digests of dropped events, and has
    held them for longer than ``remember`` of event time at ``watermark``."""
    if not state or "predictions" in state:  # nothing, or events still kept
        return False
    dropped_at = dropped_at_in(state)
    return dropped_at is not None and watermark - dropped_at > remember


SweepAction = Literal["drop", "forget"]


def sweep_action(
    state: dict[str, Any],
    watermark: datetime,
    retention: timedelta,
    remember: timedelta,
    forgetting: bool,
) -> SweepAction | None:
    """What a sweep does with one case file: drop its events past retention, forget a case
    dropped long enough ago, or nothing. A dropped case costs one key lookup unless this
    sweep is ``forgetting``: they outnumber open cases, and every sweep reads them all."""
    if "predictions" in state:
        return "drop" if past_retention(state, watermark, retention) else None
    if forgetting and forgettable(state, watermark, remember):
        return "forget"
    return None


SweepMark = tuple[datetime, bool]
"""A partition's watermark for one sweep, and whether that sweep forgets."""


def sweep_marks(
    partitions: set[int],
    watermark: Watermark,
    last_forget: dict[int, datetime],
    forget_every: timedelta,
) -> dict[int, SweepMark]:
    """The mark of each of ``partitions`` with a watermark: a partition's sweep forgets once
    per ``forget_every`` of its event time (``last_forget`` records when it last did).

    >>> from datetime import UTC
    >>> watermark, forgot = Watermark(), {}
    >>> for day in (1, 2):
    ...     _ = watermark.advance(0, datetime(2026, 3, day, tzinfo=UTC))
    >>> sweep_marks({0, 1}, watermark, forgot, timedelta(days=1))
    {0: (datetime.datetime(2026, 3, 1, 0, 0, tzinfo=datetime.timezone.utc), True)}
    >>> sweep_marks({0}, watermark, forgot, timedelta(days=1))[0][1]  # not a day later yet
    False
    """
    marks: dict[int, SweepMark] = {}
    for partition in sorted(partitions):
        current = watermark.at(partition)
        if current is None:
            continue
        forgetting = current - last_forget.get(partition, current - forget_every) >= forget_every
        if forgetting:
            last_forget[partition] = current
        marks[partition] = (current, forgetting)
    return marks


@dataclass
class ScanPacing:
    """When a timer's read of every case file may run again: ``interval_s`` after the last
    began, and not before scans have taken at most ``share`` of the time. A million case
    files take seconds to read: at their intervals alone, a back-fill's worker spent a fifth
    of its time in the retention sweeps and the backlog gauge. ``interval_s`` 0: every time.

    >>> pacing = ScanPacing(10.0)
    >>> pacing.scanned(started=100.0, finished=100.1)  # a small table: its interval
    >>> pacing.due(109.9), pacing.due(110.0)
    (False, True)
    >>> pacing.scanned(started=110.0, finished=113.0)  # 3 s: not again for 150 s
    >>> pacing.due(259.9), pacing.due(260.0)
    (False, True)
    """

    interval_s: float
    share: float = 0.02
    next_at: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def scanned(self, started: float, finished: float) -> None:
        if self.interval_s > 0:
            self.next_at = started + max(self.interval_s, (finished - started) / self.share)


SCAN_SLICE = 5_000
"""Case files a scan reads at a time (the gauge between two turns of the event loop, the
sweep after each input record): 20,000 took 24 ms in process, so a worker's 50,000 at once
would hold the join up about a tenth of a second."""


@dataclass
class SweepCursor:
    """A retention sweep under way: the keys of the case files when it began, read a slice
    at a time, each case judged by its state when its slice is read, with the marks the
    sweep began with (a watermark that moved on since only makes it drop later).

    >>> cursor = SweepCursor(["a", "b", "c"], {}, set(), (datetime.now(), False), started=0.0)
    >>> cursor.next_slice(2), cursor.done, cursor.next_slice(2), cursor.done
    (['a', 'b'], False, ['c'], True)
    """

    keys: list[str]
    marks: dict[int, SweepMark]
    owned: set[int]
    legacy_mark: SweepMark
    """The mark of the partition whose record began the sweep: for the case files from
    before the inputs were keyed by site, on partitions no record reaches any more."""
    started: float
    read: int = 0
    reading_s: float = 0.0
    """Seconds spent reading its slices (what paces the next sweep)."""

    def next_slice(self, size: int) -> list[str]:
        part = self.keys[self.read : self.read + size]
        self.read += len(part)
        return part

    @property
    def done(self) -> bool:
        return self.read >= len(self.keys)


def awaiting_truth_among(
    cases: list[tuple[str, dict[str, Any] | None]], owned: set[int], partitions: int
) -> int:
    """Predictions awaiting truth in the case files (key, state) on the ``owned`` partitions.

    >>> waiting = {"predictions": [{}, {}], "joined": {"p-1": {}}}
    >>> cases = [("site-a|c-1", waiting), ("site-a|c-2", None)]
    >>> awaiting_truth_among(cases, {case_partition("site-a|c-1", 4)}, 4)
    1
    >>> awaiting_truth_among(cases, set(), 4)
    0
    """
    # The partition (a murmur2 in Python) only of cases awaiting truth: most are joined or
    # dropped past retention.
    return sum(
        count
        for case, state in cases
        if (count := awaiting_truth_in(state)) and case_partition(case, partitions) in owned
    )


WATERMARK_SUPPORT = 2
"""How many events a partition's watermark rests on: it is the second latest event time seen,
so no single event (a clock wrong within the allowed skew) moves it alone."""


@dataclass
class Watermark:
    """The event time each input partition has reached (event time, not wall clock): the
    :data:`WATERMARK_SUPPORT`-th latest event time seen on it, None until that many events.

    >>> from datetime import UTC
    >>> watermark = Watermark()
    >>> march = datetime(2026, 3, 1, tzinfo=UTC)
    >>> watermark.advance(0, march) is None
    True
    >>> watermark.advance(0, datetime(2099, 1, 1, tzinfo=UTC)).isoformat()  # an outlier
    '2026-03-01T00:00:00+00:00'
    >>> watermark.advance(0, march + timedelta(days=1)).isoformat()
    '2026-03-02T00:00:00+00:00'
    """

    latest: dict[int, list[datetime]] = field(default_factory=dict)
    """Per partition, the latest event times seen, oldest first (at most the support)."""

    def advance(self, partition: int, event_time: datetime) -> datetime | None:
        """Take one event's time into account; the partition's watermark after it."""
        times = self.latest.setdefault(partition, [])
        if len(times) < WATERMARK_SUPPORT or event_time > times[0]:
            insort(times, event_time)
            del times[:-WATERMARK_SUPPORT]
        return self.at(partition)

    def at(self, partition: int) -> datetime | None:
        times = self.latest.get(partition, [])
        return times[0] if len(times) == WATERMARK_SUPPORT else None

    def clear(self) -> None:
        self.latest.clear()


class SweptCase(NamedTuple):
    """What a sweep does to one case file: the partition of its changelog, the case after
    it (None: forgotten) and, for a case dropped past retention, what expired unresolved."""

    home: int
    case: CaseFile | None
    expired: Expiry | None


def swept(
    key: str,
    state: dict[str, Any] | None,
    cursor: SweepCursor,
    retention: timedelta,
    remember: timedelta,
    partitions: int,
) -> SweptCase | None:
    """What the sweep of ``cursor`` does to the case file ``key`` holding ``state``, if
    anything: each case against its own partition's mark; one from before the inputs were
    keyed by site, on a partition no record reaches any more, by its owner with any sweep."""
    if not state:
        return None
    home = case_partition(key, partitions)
    mark = cursor.marks.get(home)
    if mark is None:
        if not is_legacy_case_key(key) or home not in cursor.owned:
            return None
        mark = cursor.legacy_mark
    current, forgetting = mark
    action = sweep_action(state, current, retention, remember, forgetting)
    if action is None:
        return None
    if action == "forget":
        return SweptCase(home, None, None)
    case = CaseFile.from_state(state)
    expired = expiry(case, current, retention)
    if expired is None:
        return None
    return SweptCase(home, case.dropped_past_retention(current), expired)
