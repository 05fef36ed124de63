"""Oversized input is refused early: inbox files by kind before parsing, long CSV rows by row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom.data import get_testdata_file

from collectors.case_index import CaseIndex
from collectors.followups import MAX_CSV_ROW_CHARS
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey
from collectors.settings import CsvFollowUpMapping, FollowUpMappings, InboxSettings
from collectors.watched_folder import WatchedFolder
from tests.factories import ai_output_fields

KEY = PseudonymKey(b"limits-test-site-secret-0123456789abcdefgh")
CT = Path(str(get_testdata_file("CT_small.dcm", download=False)))
MAPPINGS = FollowUpMappings(
    csv=CsvFollowUpMapping(
        identifier_column="Study UID",
        identifier_kind="study_instance_uid",
        label_column="Result",
        label_values={"cancer": "positive", "no cancer": "negative"},
        date_column="Date",
        source="pathology",
    )
)
AI_OUTPUT = ai_output_fields()


class Inbox:
    def __init__(self, root: Path, **limits: int) -> None:
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics.create(self.registry)
        self.outbox = Outbox(root / "outbox.db", metrics=metrics)
        self.cases = CaseIndex(root / "cases.db")
        intake = Intake("site-a", KEY, self.outbox, self.cases, metrics)
        self.settings = InboxSettings(path=root / "inbox", settle_seconds=0, **limits)
        self.folder = WatchedFolder(self.settings, intake, MAPPINGS, metrics)

    def drop(self, name: str, data: bytes) -> None:
        (self.settings.path / name).write_bytes(data)

    def too_large(self) -> float | None:
        return self.registry.get_sample_value(
            "postmarket_collector_files_rejected_total", {"reason": "too_large"}
        )

    def reason(self, name: str) -> str:
        return (self.settings.rejected_dir / f"{name}.reason.txt").read_text()


InboxFactory = Callable[..., Inbox]


@pytest.fixture
def inbox_factory(tmp_path: Path) -> Iterator[InboxFactory]:
    opened: list[Inbox] = []

    def make(**limits: int) -> Inbox:
        inbox = Inbox(tmp_path, **limits)
        opened.append(inbox)
        return inbox

    yield make
    for inbox in opened:
        inbox.outbox.close()
        inbox.cases.close()


def test_too_large_is_counted_from_the_start() -> None:
    registry = CollectorRegistry()
    CollectorMetrics.create(registry)
    labels = {"reason": "too_large"}
    assert registry.get_sample_value("postmarket_collector_files_rejected_total", labels) == 0


def test_a_dicom_file_above_its_limit_is_refused_unread(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory(max_dicom_bytes=1000)
    inbox.drop("ct.dcm", CT.read_bytes())
    inbox.folder.scan_once()
    assert inbox.too_large() == 1
    assert "max_dicom_bytes" in inbox.reason("ct.dcm")
    assert inbox.outbox.depth() == 0


def test_a_dicom_file_within_its_limit_is_read(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory(max_dicom_bytes=CT.stat().st_size)
    inbox.drop("ct.dcm", CT.read_bytes())
    inbox.folder.scan_once()
    assert inbox.too_large() == 0
    assert (inbox.settings.processed_dir / "ct.dcm").exists()


def test_an_oversized_ai_output_is_refused(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory(max_ai_output_bytes=1024)
    padded = {**AI_OUTPUT, "padding": "x" * 2000}
    inbox.drop("ai.json", json.dumps(padded).encode())
    inbox.folder.scan_once()
    assert inbox.too_large() == 1
    assert "max_ai_output_bytes" in inbox.reason("ai.json")


def test_an_oversized_followup_export_is_refused_whole(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory(max_followup_bytes=100)
    rows = "".join(f"1.2.{i},cancer,2026-04-02\n" for i in range(20))
    inbox.drop("export.csv", f"Study UID,Result,Date\n{rows}".encode())
    inbox.folder.scan_once()
    assert inbox.too_large() == 1
    assert "max_followup_bytes" in inbox.reason("export.csv")


def test_default_limits_admit_ordinary_input() -> None:
    settings = InboxSettings(path=Path("inbox"))
    assert settings.max_dicom_bytes >= 2 * 1024**3
    assert settings.max_ai_output_bytes >= 64 * 1024
    assert settings.max_followup_bytes >= 16 * 1024**2


def test_an_overlong_csv_row_is_refused_alone(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory()
    long_date = "2026-04-02" + " " * MAX_CSV_ROW_CHARS
    inbox.drop(
        "export.csv",
        f"Study UID,Result,Date\n1.2.3,cancer,{long_date}\n1.2.4,cancer,2026-04-02\n".encode(),
    )
    inbox.folder.scan_once()
    assert f"row 2: longer than {MAX_CSV_ROW_CHARS} characters" in inbox.reason("export.csv")
    assert (inbox.settings.processed_dir / "export.csv").exists()  # the good row was kept


def test_the_scp_refuses_an_instance_above_the_dicom_limit(tmp_path: Path) -> None:
    import pydicom
    from pynetdicom import AE
    from pynetdicom.presentation import build_context

    from collectors.settings import StoreSCPSettings
    from collectors.store_scp import STATUS_OUT_OF_RESOURCES, STATUS_SUCCESS, StoreSCP

    registry = CollectorRegistry()
    settings = StoreSCPSettings(port=0, allowed_calling_ae_titles=("PACS1",))
    limit = CT.stat().st_size + 1024  # CT_small fits; the same study with padding does not
    server = StoreSCP(settings, tmp_path / "inbox", CollectorMetrics.create(registry), limit)
    server.start()
    small = pydicom.dcmread(CT)
    large = pydicom.dcmread(CT)
    large.ImageComments = "x" * 4096
    scu = AE(ae_title="PACS1")
    scu.requested_contexts = [build_context(small.SOPClassUID, small.file_meta.TransferSyntaxUID)]
    try:
        association = scu.associate(*server.address, ae_title="POSTMARKET")
        assert association.is_established
        statuses = [int(association.send_c_store(ds).Status) for ds in (small, large)]
        association.release()
    finally:
        scu.shutdown()
        server.stop()
    assert statuses == [STATUS_SUCCESS, STATUS_OUT_OF_RESOURCES]
    assert len(list((tmp_path / "inbox").glob("scp-*.dcm"))) == 1
    labels = {"reason": "too_large"}
    assert registry.get_sample_value("postmarket_collector_files_rejected_total", labels) == 1
