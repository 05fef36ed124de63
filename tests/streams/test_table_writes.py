"""Table writes that go straight to the changelog: the same records Faust's own write sends."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.channels import case_files, write_table


class RecordingTopic:
    """Stands in for a changelog topic: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **record: Any) -> None:
        self.sent.append(record)


class RecordingTable:
    """A table's data, serializers and changelog, as write_table uses them."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.key_serializer = "json"
        self.value_serializer = "json"
        self.changelog_topic = RecordingTopic()


def test_a_set_updates_the_table_and_sends_the_state_to_the_given_partition() -> None:
    table = RecordingTable()
    asyncio.run(write_table(table, 3, "c-1", {"state_version": 2}))
    assert table.data == {"c-1": {"state_version": 2}}
    assert table.changelog_topic.sent == [
        {
            "key": "c-1",
            "value": {"state_version": 2},
            "partition": 3,
            "key_serializer": "json",
            "value_serializer": "json",
        }
    ]


def test_a_delete_sends_a_tombstone() -> None:
    table = RecordingTable()
    table.data["c-1"] = {"state_version": 2}
    asyncio.run(write_table(table, 1, "c-1", None))
    assert table.data == {}
    [record] = table.changelog_topic.sent
    assert (record["value"], record["value_serializer"]) == (None, "raw")


def test_deleting_what_the_table_does_not_hold_sends_nothing() -> None:
    table = RecordingTable()
    asyncio.run(write_table(table, 1, "c-1", None))
    assert table.changelog_topic.sent == []


def test_the_case_file_table_has_what_write_table_uses() -> None:
    table: Any = case_files
    assert table.key_serializer and table.value_serializer
    assert table.changelog_topic is not None
    assert hasattr(table.data, "__setitem__")
