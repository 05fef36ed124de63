"""The evidence sink's periodic review over N stored outcomes: seconds per review, by part.

Seeds a SQLite evidence store with ten years of outcomes at 20 sites (two versions, one
weak site) and times the site-vs-fleet review of the sink's :meth:`EvidenceSink.review`
(the first call raises the alerts, later calls find them open) and, with
``PMS_BENCH_FLEET_SNAPSHOTS=1``, its weekly snapshot refresh: the first (every week's rows
stored), one with no new data, and one after a new week of outcomes and predictions (each
outcome has its prediction; a fifth more predictions await truth). For comparison it also
times the fleet review's old path, every outcome read as a record and analysed in Python,
on the same store.

N is ``PMS_BENCH_FLEET_OUTCOMES`` (default 200,000). Prints JSON; not part of ``make bench``.
Run the same script against an older checkout (``PYTHONPATH``) to measure its review.
"""

from __future__ import annotations

import inspect
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from evidence import fleet_review, report
from evidence.models import FieldOutcome, FieldPrediction
from evidence.snapshots import refresh_snapshots, week_of
from evidence.store import EvidenceStore

OUTCOMES = int(os.environ.get("PMS_BENCH_FLEET_OUTCOMES", "200000"))
SNAPSHOTS = os.environ.get("PMS_BENCH_FLEET_SNAPSHOTS") == "1"
"""Also time the weekly snapshot refresh (slow: its first run stores every week's rows)."""
DEVICE = "dr-screen"
START = datetime(2016, 1, 1, tzinfo=UTC)


def seed(
    store: EvidenceStore,
    rows: int,
    seed: int = 11,
    *,
    start: datetime = START,
    span_s: int = 10 * 365 * 86_400,
    first_id: int = 0,
) -> None:
    """Ten years of outcomes at 20 sites; site-7 misses more referable cases than the rest.

    Each outcome's prediction is stored too, and a fifth more predictions without truth yet
    (the denominator of follow-up completeness). ``first_id`` offsets the event ids, so a
    later call adds new events (``start`` and ``span_s`` say when).
    """
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, span_s, rows))
    sites = rng.integers(0, 20, rows)
    positive = rng.random(rows) < 0.25
    sensitivity = np.where(sites == 7, 0.75, 0.88)
    hit = np.where(positive, rng.random(rows) < sensitivity, rng.random(rows) < 0.93)
    recorded = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for i in range(rows):
        when = start + timedelta(seconds=int(seconds[i]))
        label = "positive" if positive[i] else "negative"
        decision = label if hit[i] else ("negative" if positive[i] else "positive")
        batch.append(
            {
                "event_id": str(uuid.UUID(int=first_id + i + 1)),
                "device_key": DEVICE,
                "device_version": "2.1.0.3" if i % 2 else "2.2.0.0",
                "site_key": f"site-{sites[i]}",
                "task": "referable_dr",
                "case_pseudonym": f"c-{first_id + i}",
                "prediction_event_id": str(uuid.UUID(int=(1 << 64) + first_id + i + 1)),
                "prediction_time": when,
                "truth_time": when + timedelta(days=30),
                "decision": decision,
                "label": label,
                "score": 0.7 if decision == "positive" else 0.2,
                "operating_threshold": 0.5,
                "truth_source": "adjudicated_read",
                "study_design": "retrospective" if i % 5 else "prospective",
                "modality": "OP",
                "manufacturer": "Topcon",
                "model": None,
                "slice_thickness_mm": None,
                "slice_thickness_band": None,
                "recorded_at": recorded,
            }
        )
        # Every fifth outcome's stream made one more prediction that awaits its truth.
        for extra in range(1 if i % 5 else 2):
            predictions.append(
                {
                    "event_id": str(uuid.UUID(int=((extra + 1) << 64) + first_id + i + 1)),
                    "device_key": DEVICE,
                    "device_version": batch[-1]["device_version"],
                    "site_key": batch[-1]["site_key"],
                    "task": "referable_dr",
                    "prediction_time": when,
                    "study_design": batch[-1]["study_design"],
                    "recorded_at": recorded,
                }
            )
    with store.engine.begin() as connection:
        for model, table in ((FieldOutcome, batch), (FieldPrediction, predictions)):
            for first in range(0, len(table), 20_000):
                connection.execute(insert(model), table[first : first + 20_000])


def add_new_week(store: EvidenceStore, rows: int, week: int = 1) -> set[datetime]:
    """Week ``week`` of outcomes after the ten years, as a week of the sink's batches brings;
    returns the weeks (Monday starts) it touched."""
    start = START + timedelta(days=10 * 365, weeks=week)
    cases, first_id = max(1, rows // 520), rows * (1 + week)
    seed(store, cases, 11 + week, start=start, span_s=7 * 86_400, first_id=first_id)
    return {week_of(start)[0], week_of(start + timedelta(days=7))[0]}


def seconds(action: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def python_path_review(store: EvidenceStore) -> object:
    """The review as it was: every outcome read as a record, then analysed in Python."""
    outcomes = store.outcomes(DEVICE)
    return report.site_analysis(outcomes)


def main() -> None:
    results: dict[str, Any] = {"outcomes": OUTCOMES}
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'evidence.db'}"
        with EvidenceStore(url) as store:
            results["seed_s"] = seconds(lambda: seed(store, OUTCOMES))
            now = datetime.now(UTC)
            results["fleet_review_first_s"] = seconds(lambda: fleet_review.review_fleet(store, now))
            results["fleet_review_s"] = seconds(lambda: fleet_review.review_fleet(store, now), 3)
            results["fleet_alerts"] = len(store.alerts())
            results["python_path_analysis_s"] = seconds(lambda: python_path_review(store), 3)
            if SNAPSHOTS:
                results["snapshots_first_s"] = seconds(lambda: refresh_snapshots(store, DEVICE))
                results["snapshots_no_new_data_s"] = seconds(
                    lambda: refresh_snapshots(store, DEVICE), 3
                )
                add_new_week(store, OUTCOMES, 1)
                results["snapshots_after_new_week_s"] = seconds(
                    lambda: refresh_snapshots(store, DEVICE)
                )
                if "weeks" in inspect.signature(refresh_snapshots).parameters:
                    # As the sink refreshes after its first review: the weeks it stored into.
                    touched = add_new_week(store, OUTCOMES, 2)
                    results["snapshots_touched_weeks_after_new_week_s"] = seconds(
                        lambda: refresh_snapshots(store, DEVICE, touched)
                    )
                results["snapshots_stored"] = len(store.snapshots(DEVICE))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
