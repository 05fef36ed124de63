"""bench/RESULTS.md: each figure beside its goal, from the JSON the benchmarks wrote."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from results_md import figures, machine, render  # noqa: E402 - bench/ is not a package

PIPELINE = {
    "ratio_full_to_bare_faust": 0.72,
    "bare_faust_events_per_s": 9000.0,
    "full_worker": {"events_per_s": 6480.0},
    "state": {"stream_state_bytes_max": 2500.0, "open_case_bytes_mean": 700.0},
    "latency": {"offered_events_per_s": 2000.0, "p99_ms": 120.0},
}
BATCHES = {
    "full_worker_batches": {"events_per_s": 16200.0},
    "aiokafka_batches_events_per_s": 54000.0,
    "ratio_batches_full_to_bare_faust": 1.8,
    "ratio_batches_full_to_aiokafka_batches": 0.3,
    "ratio_batches_full_to_v1_full": 2.5,
    "own_work_us_batches": {"decode": 30.0, "signature": 1.0, "join": 40.0, "total": 71.0},
}
BATCHED_RATIO = (
    "full worker on signed batches, events/s relative to the bare per-record Faust agent"
)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.json").write_text(json.dumps(PIPELINE))
    return tmp_path


def test_each_figure_says_whether_it_met_its_goal(results: Path) -> None:
    found, _ = figures(results)
    verdicts = {f.name: f.met for f in found}
    full_v1 = "full worker on v1 records, events/s relative to the bare per-record Faust agent"
    assert verdicts[full_v1] is True
    assert verdicts["bytes per stream state (max)"] is False


def test_a_benchmark_without_json_is_listed_as_not_measured(results: Path) -> None:
    _, missing = figures(results)
    assert "pipeline" not in missing
    assert {"contracts", "demo", "detection_delay"} <= set(missing)


def test_the_page_names_the_machine_the_date_and_each_goal(results: Path) -> None:
    found, missing = figures(results)
    page = render(found, missing, machine(), datetime(2026, 11, 26, 18, 0, tzinfo=UTC))
    assert "2026-11-26 18:00 UTC" in page
    assert "| cores |" in page and "| python |" in page
    assert "| pipeline | bytes per stream state (max) | 2,500 | < 2,048 | **no** |" in page
    assert "Not measured in this run" in page


def test_pipeline_results_from_before_batches_have_no_batch_figures(results: Path) -> None:
    found, _ = figures(results)
    assert BATCHED_RATIO not in {f.name for f in found}


def test_the_batched_worker_is_judged_against_twice_the_bare_per_record_agent(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.json").write_text(json.dumps({**PIPELINE, **BATCHES}))
    found, _ = figures(tmp_path)
    batched = next(f for f in found if f.name == BATCHED_RATIO)
    assert (batched.value, batched.goal, batched.met) == (
        "1.80 x (16,200 vs 9,000 events/s)",
        ">= 2.0 x",
        False,
    )


def test_the_batched_workers_ratio_names_the_runs_it_is_the_best_of(tmp_path: Path) -> None:
    runs = {
        "full_worker_batches_runs_events_per_s": [15100.0, 16200.0],
        "bare_faust_runs_events_per_s": [9000.0, 7400.0],
    }
    (tmp_path / "pipeline.json").write_text(json.dumps({**PIPELINE, **BATCHES, **runs}))
    found, _ = figures(tmp_path)
    batched = next(f for f in found if f.name == BATCHED_RATIO)
    assert batched.value == (
        "1.80 x (16,200 vs 9,000 events/s; best of runs 15,100 / 16,200 vs 9,000 / 7,400; "
        "round by round 1.68 / 2.19 x, median 1.93)"
    )


@pytest.mark.parametrize(
    ("offered", "p99", "met"), [(200.0, 150.0, True), (200.0, 240.0, False), (150.0, 90.0, False)]
)
def test_the_live_rate_latency_is_judged_at_200_events_per_s(
    tmp_path: Path, offered: float, p99: float, met: bool
) -> None:
    latency = {"offered_events_per_s": offered, "p99_ms": p99, "p50_ms": 12.0}
    batched = {"latency_batches": {**latency, "offered_events_per_s": 2000.0}}
    results = {**PIPELINE, **BATCHES, **batched, "latency_live": latency}
    (tmp_path / "pipeline.json").write_text(json.dumps(results))
    found, _ = figures(tmp_path)
    [live] = [f for f in found if f.goal == "< 200 ms at 200 events/s"]
    assert (
        live.name == f"produce-to-outcome p99 at {offered:,.0f} events/s offered (signed batches)"
    )
    assert (live.value, live.met) == (f"{p99:,.0f} ms (p50 12)", met)
