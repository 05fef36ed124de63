"""``postmarket replay`` on the real broker: a retrospective study through a real worker gives
the same per-stream results as the same cases sent live, and says it is retrospective; the
replay itself sends full v2 signed batches per site (or v1 records when told)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from postmarket.contracts import Outcome
from tests.collectors.batch_records import batch_events
from tests.factories import make_followup, make_prediction
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    SignedProducer,
    metric_value,
    read_topic,
    signers,
    valid_events,
    wait_for_metric,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration
CONFUSION = "postmarket_stream_confusion_cases"
CELLS = ("tp", "fn", "tn", "fp")
HISTORY_START = datetime(2018, 1, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    number: int
    decision: str
    label: str
    score: float
    predicted_at: datetime
    truth_at: datetime

    @property
    def cell(self) -> str:
        if self.label == "positive":
            return "tp" if self.decision == "positive" else "fn"
        return "tn" if self.decision == "negative" else "fp"


def seeded_cases(count: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        score = float(rng.random())
        label = "positive" if rng.random() < 0.4 else "negative"
        predicted_at = HISTORY_START + timedelta(hours=int(rng.integers(0, 24 * 700)))
        cases.append(
            Case(
                number,
                "positive" if score >= 0.5 else "negative",
                label,
                round(score, 4),
                predicted_at,
                predicted_at + timedelta(days=int(rng.integers(1, 90))),
            )
        )
    return cases


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    with own_worker(kafka_stack.settings, tmp_path, "replay") as running:
        yield running


def send_live(bootstrap: str, cases: list[Case], site: str) -> None:
    events: list[Any] = []
    for case in cases:
        pseudonym = f"c-{site}-{case.number}"
        events.append(
            make_prediction(
                case_pseudonym=pseudonym,
                site_id=site,
                event_time=case.predicted_at,
                score=case.score,
                decision=case.decision,
            )
        )
        events.append(
            make_followup(
                case_pseudonym=pseudonym, site_id=site, event_time=case.truth_at, label=case.label
            )
        )
    with SignedProducer(bootstrap) as producer:
        producer.deliver(events)


def write_history(directory: Path, cases: list[Case], site: str) -> tuple[Path, Path]:
    """A hospital export: its own column names, naive local times, one bad row per file."""
    predictions = pd.DataFrame(
        {
            "PatientPseudonym": [f"c-{site}-{c.number}" for c in cases],
            "StudyTime": [c.predicted_at.strftime("%Y-%m-%d %H:%M:%S") for c in cases],
            "AIScore": [c.score for c in cases],
            "AIDecision": [c.decision for c in cases],
        }
    )
    predictions.loc[len(predictions)] = ["c-bad-row", "2018-13-40 25:00:00", 0.5, "positive"]
    followups = pd.DataFrame(
        {
            "PatientPseudonym": [f"c-{site}-{c.number}" for c in cases],
            "ReportTime": [c.truth_at.strftime("%Y-%m-%d %H:%M:%S") for c in cases],
            "Pathology": [c.label for c in cases],
        }
    )
    followups.loc[len(followups)] = ["c-bad-row", "2018-02-01 00:00:00", "unclear"]
    predictions_file, followups_file = directory / "ai.csv", directory / "pathology.parquet"
    predictions.to_csv(predictions_file, index=False)
    followups.to_parquet(followups_file)
    return predictions_file, followups_file


def replay_cli(bootstrap: str, file: Path, kind: str, *options: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "postmarket", "replay", str(file), "--kind", kind, *options],
        env={**os.environ, "POSTMARKET_KAFKA_BOOTSTRAP": bootstrap, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def replay_history(bootstrap: str, files: tuple[Path, Path], site: str) -> tuple[str, str]:
    predictions_file, followups_file = files
    # The site's own key, registered with the workers (which require signed events).
    key_file = predictions_file.parent / f"{site}-signing.pem"
    if not key_file.exists():
        signers(bootstrap).register(site).write(key_file)
    common = [
        *("--constant", f"site_id={site}", "--column", "case_pseudonym=PatientPseudonym"),
        *("--signing-key", str(key_file)),
    ]
    predicted = replay_cli(
        bootstrap,
        predictions_file,
        "predictions",
        *common,
        *("--column", "event_time=StudyTime", "--column", "score=AIScore"),
        *("--column", "decision=AIDecision", "--constant", "operating_threshold=0.5"),
        *("--constant", "device_id=dr-screen", "--constant", "device_version=2.1.0.3"),
        *("--constant", "task=referable_dr"),
    )
    followed = replay_cli(
        bootstrap,
        followups_file,
        "followups",
        *common,
        *("--column", "event_time=ReportTime", "--column", "label=Pathology"),
        *("--constant", "source=pathology"),
    )
    return predicted, followed


def confusion(worker: LocalWorker, site: str) -> dict[str, float]:
    return {
        cell: metric_value(worker.metrics_url, CONFUSION, site_id=site, cell=cell) for cell in CELLS
    }


def test_a_replayed_study_gives_the_live_confusion_counts_and_stays_retrospective(
    worker: LocalWorker, tmp_path: Path
) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    cases = seeded_cases(60, seed=4)
    tag = uuid.uuid4().hex[:6]
    live_site, retro_site = f"site-live-{tag}", f"site-retro-{tag}"
    expected = {cell: float(sum(c.cell == cell for c in cases)) for cell in CELLS}

    send_live(bootstrap, cases, live_site)
    predicted, followed = replay_history(
        bootstrap, write_history(tmp_path, cases, retro_site), retro_site
    )
    wait_for_metric(worker.metrics_url, CONFUSION, len(cases), site_id=live_site)
    wait_for_metric(worker.metrics_url, CONFUSION, len(cases), site_id=retro_site)

    assert confusion(worker, retro_site) == confusion(worker, live_site) == expected
    assert "row 61, column 'StudyTime' (event_time)" in predicted
    assert "row 61, column 'Pathology' (label)" in followed

    def outcomes_of(site: str, records: list[Any]) -> list[Outcome]:
        decoded = valid_events(records, Outcome)
        return [o for o in decoded if o.stream.site_id == site]

    records = read_topic(
        bootstrap,
        topics.OUTCOMES,
        lambda rs: (
            len(outcomes_of(retro_site, rs)) >= len(cases)
            and len(outcomes_of(live_site, rs)) >= len(cases)
        ),
    )
    retrospective = outcomes_of(retro_site, records)
    assert {o.study_design for o in retrospective} == {"retrospective"}
    assert {o.study_design for o in outcomes_of(live_site, records)} == {"prospective"}
    assert sorted(o.prediction_time for o in retrospective) == sorted(c.predicted_at for c in cases)


def test_replaying_the_same_files_again_counts_nothing_twice(
    worker: LocalWorker, tmp_path: Path
) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    cases = seeded_cases(30, seed=9)
    site = f"site-retro-{uuid.uuid4().hex[:6]}"
    files = write_history(tmp_path, cases, site)

    replay_history(bootstrap, files, site)
    wait_for_metric(worker.metrics_url, CONFUSION, len(cases), site_id=site)
    replay_history(bootstrap, files, site)
    wait_until_caught_up(
        bootstrap,
        worker.settings.worker_id,
        [topics.INPUTS, topics.OUTCOMES],
    )

    assert sum(confusion(worker, site).values()) == len(cases)
    assert metric_value(worker.metrics_url, "postmarket_outcomes_total", site_id=site) == len(cases)


def site_records(bootstrap: str, topic: str, keys: set[bytes], count: int) -> list[Any]:
    """The records of ``topic`` whose key is in ``keys``, once ``count`` of them are there."""

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key in keys]

    return mine(read_topic(bootstrap, topic, lambda records: len(mine(records)) >= count))


def test_a_replay_sends_full_signed_batches_per_site(kafka_stack: Any, tmp_path: Path) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    tag = uuid.uuid4().hex[:6]
    big, small = f"site-big-{tag}", f"site-small-{tag}"
    sites = [big, small] * 3 + [big] * 998
    rows = pd.DataFrame(
        {
            "site_id": sites,
            "case_pseudonym": [f"c-{tag}-{i}" for i in range(len(sites))],
            "event_time": "2019-05-02T10:00:00+00:00",
            "score": 0.7,
            "decision": "positive",
        }
    )
    history = tmp_path / "history.csv"
    rows.to_csv(history, index=False)
    signing = SigningKey.generate()
    signing.write(tmp_path / "signing.pem")

    output = replay_cli(
        bootstrap,
        history,
        "predictions",
        *("--signing-key", str(tmp_path / "signing.pem"), "--constant", "task=referable_dr"),
        *("--constant", "device_id=dr-screen", "--constant", "device_version=2.1.0.3"),
        *("--constant", "operating_threshold=0.5"),
    )

    assert topics.INPUTS in output and "1,004" in output
    records = site_records(bootstrap, topics.INPUTS, {big.encode(), small.encode()}, 4)
    keyring = SiteKeyring([signing.registration(big), signing.registration(small)])
    sizes: dict[str, list[int]] = {big: [], small: []}
    carried: Counter[str] = Counter()
    for record in records:
        assert keyring.verify(record.headers, record.topic, record.key, record.value)
        events = batch_events(record.key, record.value)
        sizes[record.key.decode()].append(len(events))
        carried.update(event.case_pseudonym for event in events)
    assert sizes == {big: [500, 500, 1], small: [3]}
    assert carried == Counter(rows["case_pseudonym"])


def test_a_v1_replay_sends_one_record_per_event(kafka_stack: Any, tmp_path: Path) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    tag = uuid.uuid4().hex[:6]
    cases = [f"c-{tag}-{i}" for i in range(3)]
    history = tmp_path / "history.csv"
    pd.DataFrame(
        {"case_pseudonym": cases, "event_time": "2019-05-02T10:00:00+00:00", "label": "negative"}
    ).to_csv(history, index=False)

    replay_cli(
        bootstrap,
        history,
        "followups",
        *("--input-contract", "v1", "--constant", f"site_id=site-{tag}"),
        *("--constant", "source=pathology"),
    )

    records = site_records(bootstrap, topics.FOLLOWUPS, {c.encode() for c in cases}, 3)
    assert sorted(r.key.decode() for r in records) == cases
