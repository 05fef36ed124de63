"""The C-STORE SCP: a pynetdicom SCU on loopback sends pydicom's test files into the same
pipeline as the watched folder; a calling AE title not on the allow-list is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client import CollectorRegistry
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.presentation import build_context

from collectors.case_index import CaseIndex
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.settings import InboxSettings, StoreSCPSettings
from collectors.store_scp import VERIFICATION_SOP_CLASS, StoreSCP
from collectors.watched_folder import WatchedFolder

KEY = PseudonymKey(b"scp-test-site-secret-0123456789abcdefghij")
SENT = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm")


def pydicom_files() -> list[Path]:
    paths = [get_testdata_file(name, download=False) for name in SENT]
    return [Path(str(p)) for p in paths if p is not None]


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[StoreSCP, CollectorRegistry]]:
    registry = CollectorRegistry()
    settings = StoreSCPSettings(port=0, allowed_calling_ae_titles=("PACS1", "CT_ROOM_2"))
    server = StoreSCP(settings, tmp_path / "inbox", CollectorMetrics.create(registry))
    server.start()
    yield server, registry
    server.stop()


def send(address: tuple[str, int], calling: str, files: list[Path]) -> list[int] | None:
    """C-STORE every file from ``calling``; None when the association is refused."""
    headers = [pydicom.dcmread(path) for path in files]
    scu = AE(ae_title=calling)
    scu.requested_contexts = [
        build_context(h.SOPClassUID, h.file_meta.TransferSyntaxUID)
        for h in {(h.SOPClassUID, h.file_meta.TransferSyntaxUID): h for h in headers}.values()
    ]
    association = scu.associate(*address, ae_title="POSTMARKET")
    if not association.is_established:
        return None
    try:
        return [int(association.send_c_store(header).Status) for header in headers]
    finally:
        association.release()
        scu.shutdown()


def echo(address: tuple[str, int], calling: str) -> int | None:
    """C-ECHO from ``calling``: the status, or None when the association is refused."""
    scu = AE(ae_title=calling)
    scu.add_requested_context(VERIFICATION_SOP_CLASS)
    association = scu.associate(*address, ae_title="POSTMARKET")
    try:
        if not association.is_established:
            return None
        status = int(association.send_c_echo().Status)
        association.release()
        return status
    finally:
        scu.shutdown()


def wait_for_count(registry: CollectorRegistry, name: str, expected: float) -> float | None:
    """The counter once it reaches ``expected`` (the SCP counts in its own thread, maybe
    after the SCU has returned), or its value after 5 seconds."""
    deadline = time.monotonic() + 5
    while registry.get_sample_value(name) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return registry.get_sample_value(name)


def test_allowed_calling_ae_title_verifies_with_c_echo(
    scp: tuple[StoreSCP, CollectorRegistry],
) -> None:
    server, registry = scp
    assert echo(server.address, "CT_ROOM_2") == 0x0000
    assert list(server.inbox.iterdir()) == []
    assert registry.get_sample_value("postmarket_collector_associations_rejected_total") == 0


def test_c_echo_from_a_calling_ae_title_not_on_the_allow_list_is_refused(
    scp: tuple[StoreSCP, CollectorRegistry],
) -> None:
    server, registry = scp
    assert echo(server.address, "INTRUDER") is None
    assert wait_for_count(registry, "postmarket_collector_associations_rejected_total", 1) == 1


def test_scu_sends_pydicom_files_into_the_pipeline(
    scp: tuple[StoreSCP, CollectorRegistry], tmp_path: Path
) -> None:
    server, registry = scp
    files = pydicom_files()
    assert len(files) >= 3
    assert send(server.address, "PACS1", files) == [0x0000] * len(files)
    received = sorted(server.inbox.glob("*.dcm"))
    assert len(received) == len(files)

    metrics = CollectorMetrics.create(CollectorRegistry())
    with Outbox(tmp_path / "outbox.db") as outbox, CaseIndex(tmp_path / "cases.db") as cases:
        intake = Intake("site-a", KEY, outbox, cases, metrics)
        folder = WatchedFolder(InboxSettings(path=server.inbox, settle_seconds=0), intake)
        assert folder.scan_once() == len(files)
        for path in files:
            study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
            assert cases.acquisition(case_pseudonym(KEY, study)) is not None, path.name
    assert registry.get_sample_value("postmarket_collector_associations_rejected_total") == 0


def test_calling_ae_title_not_on_the_allow_list_is_refused(
    scp: tuple[StoreSCP, CollectorRegistry],
) -> None:
    server, registry = scp
    assert send(server.address, "INTRUDER", pydicom_files()[:1]) is None
    assert list(server.inbox.iterdir()) == []
    assert wait_for_count(registry, "postmarket_collector_associations_rejected_total", 1) == 1


def test_instances_reach_the_inbox_without_being_held_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Received into pynetdicom's temporary files, which are moved into the inbox (copied
    across file systems: the temporary directory here is tmpfs), never left behind; the
    in-memory encoding the SCP used before is never asked for."""
    import tempfile

    from pynetdicom.events import Event

    def in_memory(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the SCP asked for the whole instance in memory")

    monkeypatch.setattr(Event, "encoded_dataset", in_memory)
    # A tmpfs: another file system than the inbox's (mkdtemp makes the directory private).
    shm = Path("/dev/shm")  # noqa: S108
    received = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    monkeypatch.setattr(tempfile, "tempdir", str(received))
    files = pydicom_files()
    server = StoreSCP(
        StoreSCPSettings(port=0, allowed_calling_ae_titles=("PACS1",)),
        tmp_path / "inbox",
        max_bytes=max(path.stat().st_size for path in files) + 1024,
    )
    server.start()
    try:
        statuses = send(server.address, "PACS1", files)
    finally:
        server.stop()
    assert statuses == [0] * len(files)
    stored = sorted((tmp_path / "inbox").glob("scp-*.dcm"))
    assert len(stored) == len(files)
    sent = {str(pydicom.dcmread(path).SOPInstanceUID) for path in files}
    assert {str(pydicom.dcmread(path).SOPInstanceUID) for path in stored} == sent
    assert list(received.iterdir()) == []
    received.rmdir()
