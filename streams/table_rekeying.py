"""Moving the previous release's worker tables to their sites' partitions, offline.

Releases before the join drove the stream monitors kept each case file under its case
pseudonym, on that pseudonym's partition, and each stream's states under its stream key,
on that key's partition; this release reads both on the site's partition (the inputs are
keyed by site). A worker adopts an old state itself at its next change, but only if it
owns both partitions: always so with one worker, by chance with several. With the old
release stopped and before any worker of this one starts, ``postmarket topics
rekey-by-site`` (:mod:`streams.table_rekeying_kafka`) reads the tables' changelogs and
plans here what to write: each old state, byte for byte, under its new key on its site's
partition, then a tombstone under its old key. Run again, it finds nothing to move.

A case file dropped past retention keeps only digests of its event ids, not its site: it
stays where it is (its partition's owner forgets it ``join_dedupe_days`` later; until then
a resend of one of its events is recognised only by the worker that holds it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from postmarket.contracts import StreamKey
from streams.retention import case_key, is_legacy_case_key, key_partition

CASE_FILES = "case-files"
MOVES = {
    CASE_FILES: CASE_FILES,
    "stream-monitors": "site-stream-monitors",
    "stream-prediction-monitors": "site-stream-prediction-monitors",
}
"""Each table the previous release keyed otherwise, and the table its states move to."""


class LatestRecord(NamedTuple):
    """The last record of one key in a table's changelog (None: a tombstone)."""

    partition: int
    value: bytes | None


Changelog = Mapping[str, LatestRecord]
"""A table's changelog read to its end: the latest record of each key."""


class ChangelogWrite(NamedTuple):
    """One record to produce to ``table``'s changelog (``value`` None: a tombstone)."""

    table: str
    partition: int
    key: str
    value: bytes | None


@dataclass
class RekeyPlan:
    """What moving the tables by site writes: ``copies`` first, ``tombstones`` once the
    copies are on the broker (stopped in between, a second run deletes what is left)."""

    copies: list[ChangelogWrite] = field(default_factory=list)
    tombstones: list[ChangelogWrite] = field(default_factory=list)
    moved: Counter[str] = field(default_factory=Counter)
    """States copied under their new key, by table."""
    superseded: Counter[str] = field(default_factory=Counter)
    """Old states whose new key holds a state already (adopted by a worker): only deleted."""
    left: list[tuple[str, str, str]] = field(default_factory=list)
    """(table, key, why) of the old states that stay where they are."""

    def __bool__(self) -> bool:
        return bool(self.copies or self.tombstones)


def plan_rekeying(changelogs: Mapping[str, Changelog], partitions: int) -> RekeyPlan:
    """What to write so that every state of the tables in :data:`MOVES` is under its
    current key on its site's partition, from the tables' changelogs (missing: empty).

    >>> state = json.dumps({"predictions": [{"site_id": "site-a"}], "followups": []})
    >>> plan = plan_rekeying({"case-files": {"pseudo-1": LatestRecord(5, state.encode())}}, 8)
    >>> [(w.partition, w.key) for w in plan.copies], [(w.partition, w.key) for w in plan.tombstones]
    ([(3, 'site-a|pseudo-1')], [(5, 'pseudo-1')])
    """
    plan = RekeyPlan()
    for table, target in MOVES.items():
        old, new = changelogs.get(table, {}), changelogs.get(target, {})
        for key, record in sorted(old.items()):
            if record.value is None:
                continue
            moved = _new_place(table, key, record.value, partitions)
            if isinstance(moved, str):
                plan.left.append((table, key, moved))
                continue
            if moved is None:
                continue  # already keyed by site
            new_key, partition = moved
            current = new.get(new_key)
            if current is not None and current.value is not None:
                plan.superseded[table] += 1
            else:
                plan.copies.append(ChangelogWrite(target, partition, new_key, record.value))
                plan.moved[table] += 1
            plan.tombstones.append(ChangelogWrite(table, record.partition, key, None))
    return plan


def _new_place(table: str, key: str, value: bytes, partitions: int) -> tuple[str, int] | str | None:
    """The (key, partition) a state moves to; None if it is where it belongs; why not, if
    it cannot move."""
    if table == CASE_FILES:
        if not is_legacy_case_key(key):
            return None
        sites = case_sites(value)
        if not sites:
            return "dropped past retention: only event digests, no site to key it by"
        if len(sites) > 1:
            return f"events of more than one site ({', '.join(sorted(sites))})"
        [site] = sites
        return case_key(site, key), key_partition(site, partitions)
    try:
        site = StreamKey.from_key(key).site_id
    except ValueError as error:
        return f"not a stream key: {error}"
    return key, key_partition(site, partitions)


def case_sites(value: bytes) -> set[str]:
    """The sites of the events a case file's table state holds.

    >>> sorted(case_sites(b'{"predictions": [{"site_id": "a"}], "followups": [{"site_id": "a"}]}'))
    ['a']
    >>> case_sites(b'{"dropped_events": "0123456789abcdef"}')
    set()
    """
    state = json.loads(value)
    events = [*state.get("predictions", ()), *state.get("followups", ())]
    return {str(event["site_id"]) for event in events if "site_id" in event}
