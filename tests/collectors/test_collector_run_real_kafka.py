"""``postmarket collector run`` end to end on the real broker: files dropped in the inbox
come out on ``pms.predictions.v1`` exactly once each, de-identified; a bad file is moved
aside and counted on /metrics by reason; SIGTERM stops the collector cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from pydicom.data import get_testdata_file

from collectors.pseudonym import PseudonymKey, case_pseudonym
from launcher.stack import manager
from launcher.stack.processes import free_port
from launcher.stack.prometheus import PrometheusPaths
from postmarket import topics
from postmarket.contracts import FollowUp, Prediction, decode
from tests.collectors.batch_records import read_batch
from tests.factories import ai_output_fields

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).parents[2]
SECRET = b"run-test-site-secret-0123456789abcdefghij"
PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "InstitutionName",
    "StationName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyDate",
)


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(str(found))


def drop(inbox: Path, name: str, data: bytes) -> None:
    """Write atomically, as a well-behaved sender does (the collector skips dot files)."""
    partial = inbox / f".{name}.part"
    partial.write_bytes(data)
    os.replace(partial, inbox / name)


def ai_output(study_uid: str, score: float) -> bytes:
    decision = "positive" if score >= 0.5 else "negative"
    fields = ai_output_fields(study_instance_uid=study_uid, score=score, decision=decision)
    return json.dumps(fields).encode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_for_metrics(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "collector exited early"
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("collector /metrics never came up")


def records_of(
    bootstrap: str, site_id: str, expected: int, timeout: float, topic: str = topics.PREDICTIONS
) -> list[bytes]:
    """The JSON of every event of ``site_id`` that would be on ``topic`` in v1, opened from
    the collector's v2 batches on ``pms.inputs.v2`` (read from the beginning)."""
    model: type[Prediction] | type[FollowUp] = (
        Prediction if topic == topics.PREDICTIONS else FollowUp
    )
    consumer = KafkaConsumer(
        topics.INPUTS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    found: list[bytes] = []

    def read_all() -> None:
        for record in consumer:
            if record.key != site_id.encode():
                continue
            for element in read_batch(record.key, record.value).elements:
                if isinstance(element.event, model):
                    found.append(element.original())

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expected:
            read_all()
        read_all()  # one more pass, so an excess would show too
    finally:
        consumer.close()
    return found


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    key = tmp_path / "site.key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    return tmp_path


@pytest.fixture
def running_collector(
    kafka_stack: manager.UpResult, site_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int, str]]:
    site_id = f"run-{uuid.uuid4().hex[:8]}"
    port = free_port()
    targets = PrometheusPaths(kafka_stack.settings.home).targets_dir("postmarket-collector")
    (site_dir / "collector.toml").write_text(
        f"""
[collector]
site_id = "{site_id}"
pseudonym_key_file = "site.key"
kafka_bootstrap = "{kafka_stack.settings.kafka_bootstrap}"
outbox_path = "state/outbox.db"
metrics_port = {port}
metrics_targets_dir = "{targets}"

[collector.inbox]
path = "inbox"
poll_seconds = 0.2
settle_seconds = 0.2

[collector.followups.csv]
identifier_column = "StudyInstanceUID"
identifier_kind = "study_instance_uid"
label_column = "Histology"
label_values = {{ "carcinoma" = "positive", "benign" = "negative" }}
date_column = "Reported"
source = "pathology"
"""
    )
    (site_dir / "inbox").mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "postmarket",
            "collector",
            "run",
            "--config",
            str(site_dir / "collector.toml"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_SITE")},
    )
    try:
        wait_for_metrics(port, process, timeout=60)
        yield process, site_dir / "inbox", port, site_id
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_collector_run_delivers_exactly_the_expected_deidentified_predictions(
    kafka_stack: manager.UpResult,
    running_collector: tuple[subprocess.Popen[bytes], Path, int, str],
) -> None:
    process, inbox, port, site_id = running_collector
    ct, mr, plan = (
        pydicom_file("CT_small.dcm"),
        pydicom_file("MR_small.dcm"),
        pydicom_file("rtplan.dcm"),
    )
    headers = {path: pydicom.dcmread(path, stop_before_pixels=True) for path in (ct, mr, plan)}
    ct_uid, mr_uid = headers[ct].StudyInstanceUID, headers[mr].StudyInstanceUID

    drop(inbox, "ai-mr.json", ai_output(mr_uid, 0.2))  # before its study: must wait for it
    drop(inbox, "ct.dcm", ct.read_bytes())
    drop(inbox, "ct-again.dcm", ct.read_bytes())  # a PACS resend: still one prediction
    drop(inbox, "mr.dcm", mr.read_bytes())
    drop(inbox, "plan.dcm", plan.read_bytes())  # a study without AI output: no prediction
    drop(inbox, "ai-ct.json", ai_output(ct_uid, 0.9))
    drop(inbox, "ai-unknown.json", ai_output("1.2.826.0.1.3680043.99.1", 0.7))  # study not here
    drop(inbox, "not-an-image.dcm", b"this is a referral letter, not DICOM\n")

    values = records_of(kafka_stack.settings.kafka_bootstrap, site_id, 2, timeout=90)

    key = PseudonymKey(SECRET)
    events = [decode(Prediction, value) for value in values]
    assert sorted((e.case_pseudonym, e.score) for e in events) == sorted(
        [(case_pseudonym(key, ct_uid), 0.9), (case_pseudonym(key, mr_uid), 0.2)]
    )
    by_case = {e.case_pseudonym: e for e in events}
    assert by_case[case_pseudonym(key, ct_uid)].acquisition.manufacturer == "GE MEDICAL SYSTEMS"
    assert by_case[case_pseudonym(key, mr_uid)].acquisition.modality == "MR"
    wire = b"".join(values)
    for header in headers.values():
        # MR_small names its institution "TOSHIBA", as its manufacturer (which is kept).
        device = " ".join(str(header.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName"))
        for keyword in PHI_KEYWORDS:
            value = str(header.get(keyword, "") or "")
            if len(value) >= 4 and value not in device:
                assert value.encode() not in wire, keyword
    assert SECRET not in wire

    samples = scrape(port)
    assert samples[("postmarket_collector_files_rejected_total", (("reason", "not_dicom"),))] == 1
    assert samples[("postmarket_collector_inputs_accepted_total", (("kind", "dicom"),))] == 4
    assert samples[("postmarket_collector_cases_waiting", (("kind", "ai_output"),))] == 1
    assert samples[("postmarket_collector_outbox_depth", ())] == 0
    assert list(inbox.iterdir()) == []  # everything moved out: nothing is read twice
    assert (inbox.parent / "inbox-rejected" / "not-an-image.dcm").exists()

    targets = PrometheusPaths(kafka_stack.settings.home).targets_dir("postmarket-collector")
    assert any(f"127.0.0.1:{port}" in t.read_text() for t in targets.iterdir())

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert SECRET not in stderr
    assert b"Traceback" not in stderr
    shutil.rmtree(inbox.parent / "inbox-processed")  # PHI copies: do not leave them behind


def test_csv_followup_reaches_kafka_keyed_like_the_prediction_of_its_study(
    kafka_stack: manager.UpResult,
    running_collector: tuple[subprocess.Popen[bytes], Path, int, str],
) -> None:
    process, inbox, port, site_id = running_collector
    ct = pydicom_file("CT_small.dcm")
    study_uid = pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID
    drop(inbox, "ct.dcm", ct.read_bytes())
    drop(inbox, "ai-ct.json", ai_output(study_uid, 0.9))
    drop(
        inbox,
        "pathology.csv",
        f"StudyInstanceUID,Histology,Reported\n{study_uid},Carcinoma,2026-04-02\n"
        f"{study_uid},unsure,2026-04-03\n".encode(),
    )
    bootstrap = kafka_stack.settings.kafka_bootstrap
    (prediction,) = records_of(bootstrap, site_id, 1, timeout=90)
    (followup,) = records_of(bootstrap, site_id, 1, timeout=90, topic=topics.FOLLOWUPS)
    assert (
        decode(FollowUp, followup).case_pseudonym == decode(Prediction, prediction).case_pseudonym
    )
    assert decode(FollowUp, followup).label == "positive"
    assert study_uid.encode() not in followup
    rejected = scrape(port)[
        ("postmarket_collector_files_rejected_total", (("reason", "bad_followup"),))
    ]
    assert rejected == 1  # the "unsure" row
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 0
    shutil.rmtree(inbox.parent / "inbox-processed")
