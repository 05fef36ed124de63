"""The follow-up backlog gauge (predictions awaiting truth) reads every case file the worker
holds: a slice at a time, so the join goes on in between instead of waiting for the whole
table, and paced by its own reading time."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Iterator

import pytest

from streams import app as worker
from streams.agents import case_backlog
from streams.app import settings
from streams.channels import case_files
from streams.retention import SCAN_SLICE, ScanPacing, case_partition

SITES = [f"site-{n}" for n in range(100)]


def site_partition(site: str) -> int:
    return case_partition(f"{site}|c-0", settings.topic_partitions)


count_cases_awaiting_truth = inspect.unwrap(
    case_backlog.count_cases_awaiting_truth
)  # not its timer


@pytest.fixture
def table() -> Iterator[dict[str, object]]:
    case_files.data.clear()
    yield case_files.data
    case_files.data.clear()


def test_the_gauge_counts_the_owned_partitions_a_slice_at_a_time(
    table: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    partitions = settings.topic_partitions
    cases = 2 * SCAN_SLICE + 1  # three slices
    sites = ["site-a", next(s for s in SITES if site_partition(s) != site_partition("site-a"))]
    keys = [f"{sites[n % 2]}|c-{n}" for n in range(cases)]  # two sites, one owned
    for n, key in enumerate(keys):  # every third case joined; two predictions in every fifth
        predictions = [{}, {}] if n % 5 == 0 else [{}]
        table[key] = {"predictions": predictions, "joined": {} if n % 3 else {"p": {}}}
    owned = {site_partition("site-a")}
    monkeypatch.setattr(case_backlog, "owned_partitions", lambda topic: owned)
    monkeypatch.setattr(case_backlog, "awaiting_gauge", ScanPacing(10.0))
    expected = sum(
        (2 if n % 5 == 0 else 1) - (n % 3 == 0)
        for n, key in enumerate(keys)
        if case_partition(key, partitions) in owned
    )
    turns: list[int] = []
    started: list[float] = []

    async def scenario() -> None:
        async def join_going_on() -> None:
            while True:
                turns.append(1)
                time.sleep(0.15)  # a record's work, between the gauge's slices
                await asyncio.sleep(0)

        other = asyncio.ensure_future(join_going_on())
        await asyncio.sleep(0)
        turns.clear()
        started.append(time.monotonic())
        await count_cases_awaiting_truth()
        during = len(turns)
        other.cancel()
        assert during >= math.ceil(cases / SCAN_SLICE) - 1  # it ran between the slices

    asyncio.run(scenario())
    gauge = worker.registry.get_sample_value("postmarket_cases_awaiting_truth")
    assert gauge == expected > 0
    # Paced by its own reading (milliseconds), not by the join's work in between (0.3 s
    # and more, which at 2 % of the time would put the next read 15 s and more away).
    assert 10.0 <= case_backlog.awaiting_gauge.next_at - started[0] < 11.0
