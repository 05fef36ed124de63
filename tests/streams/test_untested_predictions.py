"""A record's predictions applied as runs (``StreamMonitor.observe_scores``) leave a stream as
``observe_score`` one by one does: the same states, the same signals at the same cases, the
same ones skipped as applied already, through its reference, its windows' tests, a shifted
mix of scores and scanners that fires them, a re-baselining and a replayed record."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest

from postmarket.contracts.events import JoinPosition
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.monitor_policy import MonitorPolicy
from streams.routing import RoutedScore
from streams.stream_monitor import StreamMonitor
from tests.factories import make_registry_entry

POLICY = MonitorPolicy(score_reference_cases=120, score_window=40, estimate_window=60)
ENTRY = make_registry_entry()
SCANNERS = ["A", "B", "C"]


def fresh() -> StreamMonitor:
    claims = claimed_performance(ENTRY, "referable_dr")
    bounds = claimed_lower_bounds(ENTRY, "referable_dr")
    return StreamMonitor.for_claims(claims, POLICY, ENTRY.reference_prevalence, bounds)


def records(seed: int, count: int, decided: bool = True) -> list[list[RoutedScore]]:
    """``count`` input records of 1 to 80 predictions each; the scores and scanners shift
    half-way (the drift tests fire), a tenth of the cases from another partition."""
    rng = np.random.default_rng(seed)
    made: list[list[RoutedScore]] = []
    for offset in range(count):
        shifted = offset > count // 2
        entries = []
        for index in range(int(rng.integers(1, 81))):
            score = float(rng.beta(5 if shifted else 2, 2))
            scanner = SCANNERS[int(rng.integers(0, 3 if shifted else 2))]
            partition = 1 if rng.random() < 0.1 else 0
            entries.append(
                RoutedScore(
                    score=round(score, 6),
                    joined_at=JoinPosition(
                        topic="pms.inputs.v2", partition=partition, offset=offset, rank=0,
                        index=index,
                    ),
                    decision=("positive" if score > 0.5 else "negative") if decided else None,
                    categories={"manufacturer": "ACME", "model": scanner},
                )
            )  # fmt: skip
        made.append(entries)
    return made


def one_by_one(monitor: StreamMonitor, entries: list[RoutedScore]) -> list[Any]:
    return [
        None
        if monitor.already_applied("prediction", e.joined_at)
        else monitor.observe_score(e.score, e.joined_at, e.decision, e.categories)
        for e in entries
    ]


def stored(monitor: StreamMonitor) -> str:
    return json.dumps(monitor.to_states(), sort_keys=True)


@pytest.mark.parametrize("decided", [True, False], ids=["decided", "previous-release"])
def test_runs_of_predictions_leave_the_stream_as_one_by_one(decided: bool) -> None:
    alone, in_runs = fresh(), fresh()
    signals = 0
    for number, entries in enumerate(records(11, 120, decided)):
        if number == 70:  # a re-baselining: the reference starts again
            at = JoinPosition(topic="pms.rebaselines.v1", partition=0, offset=number, rank=0)
            decision = uuid.UUID(int=number)
            assert alone.rebaseline(decision, at) == in_runs.rebaseline(decision, at)
        expected = one_by_one(alone, entries)
        assert list(in_runs.observe_scores(entries)) == expected
        assert stored(in_runs) == stored(alone)
        signals += sum(len(case) for case in expected if case)
    assert signals >= 3  # the shift fired the drift tests: signals compared at their cases
    assert alone.predictions == in_runs.predictions > 4000


def test_a_record_read_again_is_skipped_case_by_case() -> None:
    alone, in_runs = fresh(), fresh()
    made = records(12, 30)
    for entries in made:
        assert list(in_runs.observe_scores(entries)) == one_by_one(alone, entries)
    for entries in made[-3:]:  # read again after a crash: every case applied already
        assert list(in_runs.observe_scores(entries)) == [None] * len(entries)
        assert one_by_one(alone, entries) == [None] * len(entries)
    assert stored(in_runs) == stored(alone)


def test_an_unmonitored_streams_signal_comes_at_its_first_case() -> None:
    claims = {"sensitivity": 0.999999, "specificity": 0.907}  # no chart can monitor it
    alone = StreamMonitor.for_claims(claims, POLICY, None)  # type: ignore[arg-type]
    in_runs = StreamMonitor.for_claims(claims, POLICY, None)  # type: ignore[arg-type]
    entries = records(13, 1)[0]
    expected = one_by_one(alone, entries)
    assert expected[0]  # the unmonitored_stream signal
    assert list(in_runs.observe_scores(entries)) == expected
    assert stored(in_runs) == stored(alone)
