"""The report on data produced by the real pipeline: registry publish -> worker -> sink."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evidence_builders import ACTOR, SENSITIVITY, T0, TASK
from report_builders import SCANNERS, SPECIFICITY
from report_rendering import EXPECTED_SECTIONS, headings, is_blank, pdf_pages, screenshot
from typer.testing import CliRunner

from evidence.sink import EvidenceSink
from evidence.store import EvidenceStore
from launcher.cli import app
from launcher.local_worker import LocalWorker
from postmarket.config import Settings
from tests.factories import make_followup, make_prediction
from tests.integration.pipeline_io import SignedProducer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

runner = CliRunner()
CASES = 160


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-report-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )
    running = LocalWorker(settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def register(url: str, device: str, bootstrap: str) -> None:
    with EvidenceStore(url) as store:
        store.add_device(device, name="DR Screen", manufacturer="Acme", tasks=[TASK], actor=ACTOR)
        store.add_version(device, "2.1.0.3", status="registered", regulator="NMPA", actor=ACTOR)
        for claim in (SENSITIVITY, SPECIFICITY):
            store.add_claim(device, "2.1.0.3", claim, actor=ACTOR)
    result = runner.invoke(app, ["registry", "publish", "--url", url, "--bootstrap", bootstrap])
    assert result.exit_code == 0, result.output


def field_events(device: str) -> tuple[list[Any], int]:
    """Cases at two sites where sensitivity is far below the claim; some without truth."""
    rng = np.random.default_rng(5)
    events: list[Any] = []
    followed = 0
    for i in range(CASES):
        site = f"site-{i % 2}"
        design = "retrospective" if i % 4 == 0 else "prospective"
        positive = rng.random() < 0.5
        detected = rng.random() < (0.45 if positive else 0.92)
        decision = (
            ("positive" if detected else "negative")
            if positive
            else ("negative" if detected else "positive")
        )
        case = f"c-{device}-{i}"
        events.append(
            make_prediction(
                device_id=device, site_id=site, case_pseudonym=case, decision=decision,
                event_time=T0 + timedelta(hours=3 * i), study_design=design,
                acquisition=SCANNERS[i % len(SCANNERS)],
            )
        )  # fmt: skip
        if i % 10 != 9:  # one case in ten still waits for its follow-up
            followed += 1
            events.append(
                make_followup(
                    site_id=site, case_pseudonym=case, study_design=design,
                    label="positive" if positive else "negative",
                    event_time=T0 + timedelta(hours=3 * i, days=20),
                )
            )  # fmt: skip
    return events, followed


def sink_until(url: str, bootstrap: str, device: str, outcomes: int, timeout_s: float) -> None:
    group = f"sink-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout_s
    with EvidenceStore(url) as store:
        while time.monotonic() < deadline:
            EvidenceSink(store, bootstrap, group=group).run(until_idle_s=3.0)
            if store.outcome_count(device) >= outcomes and store.device_alerts(device):
                return
    raise AssertionError(f"the sink did not store {outcomes} outcomes in {timeout_s} s")


def test_report_on_pipeline_data_shows_the_claim_failing(
    worker: LocalWorker, sqlite_url: str, tmp_path: Path
) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    register(sqlite_url, device, bootstrap)
    time.sleep(2)  # the worker's global registry table follows the compacted topic
    events, followed = field_events(device)
    with SignedProducer(bootstrap) as producer:
        producer.deliver(events)

    sink_until(sqlite_url, bootstrap, device, followed, timeout_s=180)

    html_out, pdf_out = tmp_path / "report.html", tmp_path / "report.pdf"
    for fmt, out in (("html", html_out), ("pdf", pdf_out)):
        result = runner.invoke(
            app,
            ["report", "--device", device, "--from", "2026-03-01", "--to", "2026-03-31",
             "--format", fmt, "--out", str(out), "--url", sqlite_url],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    document = html_out.read_text()
    assert headings(document) == EXPECTED_SECTIONS
    assert "below claim" in document
    assert "sensitivity_claims_test" in document
    prospective = sum(1 for i in range(CASES) if i % 4 != 0 and i % 10 != 9)
    assert f"prospective {prospective}</b> · <b>retrospective {followed - prospective}" in document
    assert not is_blank(screenshot(html_out, tmp_path / "page.png", tmp_path))
    assert pdf_pages(pdf_out, tmp_path)
