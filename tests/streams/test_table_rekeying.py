"""Moving the previous release's tables by site (streams.table_rekeying): what is planned,
that the keys and topics it writes are the ones Faust reads, and that a worker started
during the move stops it before its next writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping

import pytest

from postmarket.contracts import StreamKey
from streams.casefile import CaseFile, RecordPosition
from streams.retention import case_key, case_partition, key_partition
from streams.table_rekeying import (
    MOVES,
    Changelog,
    LatestRecord,
    RekeyPlan,
    case_sites,
    plan_rekeying,
)
from streams.table_rekeying_kafka import WorkersRunning, changelog_topic, table_key, write_plan
from tests.factories import make_followup, make_prediction

PARTITIONS = 8


def _case_state(site: str, pseudonym: str, *, joined: bool = True) -> bytes:
    case = CaseFile()
    case.add(make_prediction(site_id=site, case_pseudonym=pseudonym), RecordPosition("p", 0, 1))
    if joined:
        followup = make_followup(site_id=site, case_pseudonym=pseudonym)
        case.add(followup, RecordPosition("f", 0, 2))
    return json.dumps(case.to_state()).encode()


def _pseudonym_off_its_site(site: str) -> str:
    """A pseudonym whose own partition is not its site's (where a worker of several may
    not hold both)."""
    site_partition = key_partition(site, PARTITIONS)
    return next(
        pseudonym
        for n in range(100)
        if key_partition(pseudonym := f"case-{n}", PARTITIONS) != site_partition
    )


def _applied(
    changelogs: Mapping[str, Changelog], plan: RekeyPlan
) -> dict[str, dict[str, LatestRecord]]:
    after = {table: dict(records) for table, records in changelogs.items()}
    for write in [*plan.copies, *plan.tombstones]:
        after.setdefault(write.table, {})[write.key] = LatestRecord(write.partition, write.value)
    return after


def test_a_case_file_moves_byte_for_byte_to_its_sites_partition() -> None:
    pseudonym = _pseudonym_off_its_site("site-a")
    state = _case_state("site-a", pseudonym)
    old_partition = key_partition(pseudonym, PARTITIONS)
    plan = plan_rekeying(
        {"case-files": {pseudonym: LatestRecord(old_partition, state)}}, PARTITIONS
    )
    [copy] = plan.copies
    new_key = case_key("site-a", pseudonym)
    assert (copy.table, copy.key, copy.value) == ("case-files", new_key, state)
    assert copy.partition == case_partition(new_key, PARTITIONS) != old_partition
    assert [(t.table, t.partition, t.key, t.value) for t in plan.tombstones] == [
        ("case-files", old_partition, pseudonym, None)
    ]
    assert plan.moved == {"case-files": 1} and not plan.left


def test_a_second_run_moves_nothing() -> None:
    pseudonym = _pseudonym_off_its_site("site-b")
    stream = StreamKey(device_id="d", device_version="1.0.0.0", site_id="site-b", task="t").as_key()
    changelogs = {
        "case-files": {pseudonym: LatestRecord(1, _case_state("site-b", pseudonym))},
        "stream-monitors": {stream: LatestRecord(2, b'{"n": 1}')},
        "stream-prediction-monitors": {stream: LatestRecord(2, b'{"n": 2}')},
    }
    first = plan_rekeying(changelogs, PARTITIONS)
    assert first.moved == {"case-files": 1, "stream-monitors": 1, "stream-prediction-monitors": 1}
    second = plan_rekeying(_applied(changelogs, first), PARTITIONS)
    assert not second and second.moved == {} and second.left == []


def test_stream_states_move_to_the_site_tables_on_the_sites_partition() -> None:
    stream = StreamKey(device_id="d", device_version="2.0.0.0", site_id="site-c", task="t").as_key()
    old_partition = key_partition(stream, PARTITIONS)
    plan = plan_rekeying(
        {
            "stream-monitors": {stream: LatestRecord(old_partition, b'{"labelled": 1}')},
            "stream-prediction-monitors": {stream: LatestRecord(old_partition, b'{"free": 1}')},
        },
        PARTITIONS,
    )
    site_partition = key_partition("site-c", PARTITIONS)
    assert sorted(plan.copies) == sorted(
        [
            ("site-stream-monitors", site_partition, stream, b'{"labelled": 1}'),
            ("site-stream-prediction-monitors", site_partition, stream, b'{"free": 1}'),
        ]
    )
    assert sorted(plan.tombstones) == sorted(
        [
            ("stream-monitors", old_partition, stream, None),
            ("stream-prediction-monitors", old_partition, stream, None),
        ]
    )


def test_a_state_a_worker_adopted_already_is_only_deleted() -> None:
    pseudonym = "case-x"
    adopted = _case_state("site-d", pseudonym, joined=True)
    plan = plan_rekeying(
        {
            "case-files": {
                pseudonym: LatestRecord(0, _case_state("site-d", pseudonym, joined=False)),
                case_key("site-d", pseudonym): LatestRecord(3, adopted),
            }
        },
        PARTITIONS,
    )
    assert plan.copies == [] and plan.superseded == {"case-files": 1}
    assert [(t.key, t.value) for t in plan.tombstones] == [(pseudonym, None)]


def test_what_cannot_move_stays_and_is_named() -> None:
    digests_only = json.dumps(
        CaseFile().dropped_past_retention(make_prediction().event_time).to_state()
    )
    mixed = json.dumps(
        {"predictions": [{"site_id": "site-a"}], "followups": [{"site_id": "site-b"}]}
    )
    plan = plan_rekeying(
        {
            "case-files": {
                "dropped": LatestRecord(0, digests_only.encode()),
                "mixed": LatestRecord(1, mixed.encode()),
                "site-a|kept": LatestRecord(2, _case_state("site-a", "kept")),
                "gone": LatestRecord(3, None),
            },
            "stream-monitors": {"not-a-stream": LatestRecord(4, b"{}")},
        },
        PARTITIONS,
    )
    assert not plan
    reasons = {(table, key): why for table, key, why in plan.left}
    assert set(reasons) == {
        ("case-files", "dropped"),
        ("case-files", "mixed"),
        ("stream-monitors", "not-a-stream"),
    }
    assert "digests" in reasons["case-files", "dropped"]
    assert "site-a, site-b" in reasons["case-files", "mixed"]


def test_the_site_of_a_real_case_file_state() -> None:
    assert case_sites(_case_state("site-e", "p")) == {"site-e"}
    assert case_sites(_case_state("site-e", "p", joined=False)) == {"site-e"}


@pytest.mark.parametrize("table", sorted({*MOVES, *MOVES.values()}))
def test_topics_and_keys_are_those_faust_writes(table: str) -> None:
    from streams import channels

    tables = {
        "case-files": channels.case_files,
        "stream-monitors": channels.stream_monitors,
        "stream-prediction-monitors": channels.stream_prediction_monitors,
        "site-stream-monitors": channels.site_stream_monitors,
        "site-stream-prediction-monitors": channels.site_stream_prediction_monitors,
    }
    faust_table = tables[table]
    worker_id = channels.app.conf.id
    assert changelog_topic(worker_id, table) == faust_table.changelog_topic.get_topic_name()
    for key in ("site-a|case-1", "case-1", "dev|1.0|site-a|dr-referable", "sïte|é"):
        faust_key, _ = faust_table.changelog_topic.prepare_key(key, faust_table.key_serializer)
        assert table_key(key) == faust_key


class RecordingProducer:
    """What the move produces, in order: each record's (topic, key, value), and flushes."""

    def __init__(self) -> None:
        self.written: list[tuple[str, bytes, bytes | None] | str] = []

    def send(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> None:
        self.written.append((topic, key, value))

    def flush(self) -> None:
        self.written.append("flush")


def _members(*counts: int) -> Callable[[], int]:
    """The worker group's member count at each successive check."""
    answers: Iterator[int] = iter(counts)
    return lambda: next(answers)


def _one_old_case() -> dict[str, Changelog]:
    pseudonym = _pseudonym_off_its_site("site-a")
    old = LatestRecord(key_partition(pseudonym, PARTITIONS), _case_state("site-a", pseudonym))
    return {"case-files": {pseudonym: old}}


def _one_case_move() -> RekeyPlan:
    return plan_rekeying(_one_old_case(), PARTITIONS)


def test_with_no_worker_running_the_copies_are_flushed_before_the_tombstones() -> None:
    plan, producer = _one_case_move(), RecordingProducer()

    write_plan(producer, "pms", plan, _members(0, 0))

    [copy], [tombstone] = plan.copies, plan.tombstones
    assert producer.written == [
        ("pms-case-files-changelog", table_key(copy.key), copy.value),
        "flush",
        ("pms-case-files-changelog", table_key(tombstone.key), None),
        "flush",
    ]


def test_a_worker_started_during_the_read_stops_the_move_before_any_copy() -> None:
    producer = RecordingProducer()

    with pytest.raises(WorkersRunning, match="'pms' are running: stop every worker") as refused:
        write_plan(producer, "pms", _one_case_move(), _members(1, 0))

    assert "copies" not in str(refused.value)
    assert producer.written == []


def test_a_worker_started_during_the_copies_stops_the_move_before_the_tombstones() -> None:
    changelogs, producer = _one_old_case(), RecordingProducer()
    plan = plan_rekeying(changelogs, PARTITIONS)

    with pytest.raises(WorkersRunning, match="'pms' are running: stop every worker") as refused:
        write_plan(producer, "pms", plan, _members(0, 1))

    [copy] = plan.copies
    assert producer.written == [
        ("pms-case-files-changelog", table_key(copy.key), copy.value),
        "flush",
    ]
    assert "copies written already are harmless: run this again" in str(refused.value)
    # As the refusal says: run again, it only deletes the old states.
    again = plan_rekeying(_applied(changelogs, RekeyPlan(copies=plan.copies)), PARTITIONS)
    assert (again.copies, again.tombstones) == ([], plan.tombstones)
