"""Hospital IT's first hour, as docs/hospital-it.md walks it, against the real broker.

Into a fresh venv with only the collector extra (``uv``, about 6 s with a warm cache), the
engineer makes the site key and the signing key, has ``collector check --kafka`` accept the
configuration, runs the collector, verifies the PACS link with C-ECHO, receives a CT study
by C-STORE and an MR study by STOW-RS (real files from pydicom's test data), the AI
device's results for both in the watched folder, and a pathology result over MLLP from an
"interface engine"; then sees the two predictions and the follow-up on Kafka, joined by
their case pseudonyms and without the studies' identifiers, and ``collector status``
saying the outbox is empty and when it last delivered.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE

from postmarket import topics
from postmarket.contracts import ContractViolation, FollowUp, Prediction, decode
from tests.collectors.batch_records import read_batch
from tests.factories import ai_output_fields
from tests.integration.pipeline_io import free_port, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
SITE = "journey-hospital"
TOKEN = "journey-stow-token-0123456789abcdef"  # noqa: S105 - a test token
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(str(found))


@pytest.fixture(scope="module")
def collector_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the collector extra only, as the page installs it."""
    venv = tmp_path_factory.mktemp("hospital") / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "-c", str(REPO / "constraints.txt"), f"{REPO}[collector]"],
        check=True, timeout=120,
    )  # fmt: skip
    return venv


class Site:
    """The collector host: its folder, its venv's ``postmarket``, its ports."""

    def __init__(self, root: Path, venv: Path) -> None:
        self.root, self.venv = root, venv
        self.scp_port, self.stow_port, self.mllp_port = free_port(), free_port(), free_port()
        self.environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
        self.environment["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.environment['PATH']}"

    def postmarket(self, *argv: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["postmarket", *argv], cwd=self.root, env=self.environment,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        shown = f"postmarket {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
        assert done.returncode == expect, shown
        assert "Traceback" not in done.stdout + done.stderr, shown
        return done


def write_config(site: Site, bootstrap: str) -> None:
    (site.root / "collector.toml").write_text(
        f"""
[collector]
site_id = "{SITE}"
pseudonym_key_file = "site.key"
signing_key_file = "signing.pem"
kafka_bootstrap = "{bootstrap}"
outbox_path = "state/outbox.db"
metrics_port = {free_port()}
mllp_port = {site.mllp_port}

[collector.inbox]
path = "inbox"
processed_action = "delete"
poll_seconds = 0.2
settle_seconds = 0.2

[collector.scp]
port = {site.scp_port}
ae_title = "POSTMARKET"
allowed_calling_ae_titles = ["PACS1"]

[collector.stow_rs]
port = {site.stow_port}
token_file = "secrets/stow-token"

[collector.followups.hl7]
identifier_field = "OBR-3"
identifier_kind = "study_instance_uid"
observation_id = "22634-0"
label_values = {{ "M-80003" = "positive", "M-00100" = "negative" }}
source = "pathology"
""",
        encoding="utf-8",
    )
    (site.root / "secrets").mkdir()
    token = site.root / "secrets" / "stow-token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)


@pytest.fixture
def running_collector(
    kafka_stack: Any, collector_venv: Path, tmp_path: Path
) -> Iterator[tuple[Site, subprocess.Popen[bytes]]]:
    site = Site(tmp_path, collector_venv)
    site_key = "head -c 48 /dev/urandom | base64 > site.key && chmod 600 site.key"  # the page's
    subprocess.run(["bash", "-e", "-o", "pipefail", "-c", site_key], cwd=tmp_path, check=True)
    keygen = site.postmarket("collector", "keygen", "--out", "signing.pem", "--site", SITE)
    assert f"site-keys register --site {SITE}" in keygen.stdout
    assert (tmp_path / "signing.pem").stat().st_mode & 0o777 == 0o600
    write_config(site, kafka_stack.settings.kafka_bootstrap)

    checked = site.postmarket("collector", "check", "--kafka", "--config", "collector.toml")
    assert f"configuration ok: site {SITE}" in checked.stderr
    assert "connected, input topics visible" in checked.stderr

    log = (tmp_path / "collector.log").open("wb")
    process = subprocess.Popen(
        ["postmarket", "collector", "run", "--config", "collector.toml"],
        cwd=tmp_path, env=site.environment, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for port in (site.scp_port, site.stow_port, site.mllp_port):
            wait_for_port(port, process, tmp_path / "collector.log")
        yield site, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text()}"
            time.sleep(0.2)


def c_echo_then_c_store(port: int, study: Path) -> tuple[int, int]:
    """The PACS's "verify" button, then routing the study: both statuses."""
    dataset = pydicom.dcmread(study)
    scu = AE(ae_title="PACS1")
    scu.add_requested_context(VERIFICATION_SOP_CLASS)
    scu.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = scu.associate("127.0.0.1", port, ae_title="POSTMARKET")
    try:
        assert association.is_established
        echoed = int(association.send_c_echo().Status)
        stored = int(association.send_c_store(dataset).Status)
        association.release()
        return echoed, stored
    finally:
        scu.shutdown()


def stow(port: int, study: Path) -> dict[str, Any]:
    """An AI platform's STOW-RS POST of one instance; the Store Instances Response."""
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + study.read_bytes() + b"\r\n--B--\r\n"
    request = urllib.request.Request(  # noqa: S310 - loopback, our own server
        f"http://127.0.0.1:{port}/studies",
        data=body,
        method="POST",
        headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=B',
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/dicom+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def mllp_result(port: int, study_uid: str) -> str:
    """An interface engine's ORU^R01 over MLLP; the ACK's MSA segment."""
    message = "\r".join(
        [
            "MSH|^~\\&|PATHLAB|HOSP|PMS|HOSP|20260403101500||ORU^R01^ORU_R01|J1|P|2.5.1",
            "PID|1||PAT123^^^HOSP^MR||DOE^JANE||19600101|F",
            f"OBR|1|ORD1|{study_uid}|88305^Surgical pathology|||202604031015+0200",
            "OBX|1|CWE|22634-0^Pathology report impression||M-80003^Finding||||||F",
        ]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            data = client.recv(65536)
            assert data, "the listener closed the connection before its ACK"
            reply += data
    (msa,) = [s for s in reply.strip(b"\x0b\x1c\r").decode().split("\r") if s.startswith("MSA")]
    return msa


def drop(inbox: Path, name: str, fields: dict[str, Any]) -> None:
    partial = inbox / f".{name}.part"
    partial.write_text(json.dumps(fields), encoding="utf-8")
    os.replace(partial, inbox / name)


def site_events(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """The JSON of this site's events that v1 would put on ``topic``, opened from the
    collector's v2 batches (keyed by the site) on ``pms.inputs.v2``."""
    model: type[Prediction] | type[FollowUp] = (
        Prediction if topic == topics.PREDICTIONS else FollowUp
    )

    def events_of(key: bytes | None, value: bytes) -> list[bytes]:
        try:
            batch = read_batch(key, value)
        except ContractViolation:
            return []  # the topic is shared: another test's deliberately bad record
        return [e.original() for e in batch.elements if isinstance(e.event, model)]

    def mine(records: list[Any]) -> list[bytes]:
        return [raw for r in records if r.key == SITE.encode() for raw in events_of(r.key, r.value)]

    return mine(
        read_topic(bootstrap, topics.INPUTS, lambda records: len(mine(records)) >= count, 90)
    )


def test_hospital_it_installs_checks_receives_and_delivers(
    kafka_stack: Any, running_collector: tuple[Site, subprocess.Popen[bytes]]
) -> None:
    site, process = running_collector
    ct, mr = pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")
    ct_uid = str(pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID)
    mr_header = pydicom.dcmread(mr, stop_before_pixels=True)

    assert c_echo_then_c_store(site.scp_port, ct) == (0x0000, 0x0000)
    answer = stow(site.stow_port, mr)
    assert answer["00081199"]["Value"][0]["00081155"]["Value"] == [str(mr_header.SOPInstanceUID)]
    inbox = site.root / "inbox"
    for name, uid, score in (
        ("ai-ct.json", ct_uid, 0.92),
        ("ai-mr.json", str(mr_header.StudyInstanceUID), 0.12),
    ):
        decision = "positive" if score > 0.5 else "negative"
        drop(inbox, name, ai_output_fields(study_instance_uid=uid, score=score, decision=decision))
    assert mllp_result(site.mllp_port, ct_uid).startswith("MSA|AA|J1")

    bootstrap = kafka_stack.settings.kafka_bootstrap
    predictions = site_events(bootstrap, topics.PREDICTIONS, 2)
    (followup,) = site_events(bootstrap, topics.FOLLOWUPS, 1)
    decoded = {decode(Prediction, value).score: decode(Prediction, value) for value in predictions}
    assert sorted(decoded) == [0.12, 0.92]
    assert decoded[0.92].acquisition.modality == "CT"
    assert decoded[0.12].acquisition.modality == "MR"
    assert decode(FollowUp, followup).case_pseudonym == decoded[0.92].case_pseudonym
    assert decode(FollowUp, followup).label == "positive"
    wire = b"".join([*predictions, followup])
    for identifier in (ct_uid, str(mr_header.StudyInstanceUID), "PAT123", "DOE"):
        assert identifier.encode() not in wire

    deadline = time.monotonic() + 30
    while True:  # the status is read from the files while the collector runs
        lines = site.postmarket("collector", "status", "--config", "collector.toml").stdout
        if lines.startswith("outbox: 0 events waiting") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert lines.startswith("outbox: 0 events waiting"), lines
    (waiting,) = [line for line in lines.splitlines() if line.startswith("waiting for")]
    assert waiting == "waiting for their study: nothing", lines
    assert "3 events sent in all" in lines and "last delivery: never" not in lines
    assert "last error: none" in lines

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not [p for p in inbox.iterdir() if not p.name.startswith(".")]  # read, then deleted
