"""Inputs meet their study: AI outputs and follow-ups arriving before or after the DICOM
header get the same case pseudonym as its prediction; the watched folder reads each file
once, moves it out, and refuses bad files and rows by reason without stopping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client import CollectorRegistry
from pydicom.data import get_testdata_file

from collectors.case_index import CaseIndex
from collectors.events import AIOutput
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.settings import (
    CsvFollowUpMapping,
    FhirFollowUpMapping,
    FollowUpMappings,
    Hl7FollowUpMapping,
    InboxSettings,
)
from collectors.watched_folder import WatchedFolder
from postmarket import topics
from postmarket.contracts import FollowUp, Prediction, decode
from tests.factories import ai_output_fields

KEY = PseudonymKey(b"intake-test-site-secret-0123456789abcdefg")
CT = Path(str(get_testdata_file("CT_small.dcm", download=False)))
ACCESSION = "ACC-778899"

MAPPINGS = FollowUpMappings(
    csv=CsvFollowUpMapping(
        identifier_column="Study UID",
        identifier_kind="study_instance_uid",
        label_column="Result",
        label_values={"cancer": "positive", "no cancer": "negative"},
        date_column="Date",
        source="pathology",
    ),
    fhir=FhirFollowUpMapping(label_codes={"http://snomed.info/sct|363346000": "positive"}),
    hl7=Hl7FollowUpMapping(label_values={"POS": "positive", "NEG": "negative"}),
)


class Site:
    """One site's intake over a fresh outbox and case index, with its metrics."""

    def __init__(self, root: Path) -> None:
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics.create(self.registry)
        self.outbox = Outbox(root / "outbox.db", metrics=self.metrics)
        self.cases = CaseIndex(root / "cases.db")
        self.intake = Intake("site-a", KEY, self.outbox, self.cases, self.metrics)
        self.inbox = InboxSettings(path=root / "inbox", settle_seconds=0)
        self.folder = WatchedFolder(self.inbox, self.intake, MAPPINGS, self.metrics)

    def predictions(self) -> list[Prediction]:
        return [
            decode(Prediction, e.record.value)
            for e in self.outbox.pending()
            if e.record.topic == topics.PREDICTIONS
        ]

    def followups(self) -> list[FollowUp]:
        return [
            decode(FollowUp, e.record.value)
            for e in self.outbox.pending()
            if e.record.topic == topics.FOLLOWUPS
        ]

    def rejected(self, reason: str) -> float | None:
        return self.registry.get_sample_value(
            "postmarket_collector_files_rejected_total", {"reason": reason}
        )

    def drop(self, name: str, data: bytes | str) -> Path:
        path = self.inbox.path / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def close(self) -> None:
        self.outbox.close()
        self.cases.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    yield site
    site.close()


def ct_header(accession: str | None = None) -> pydicom.Dataset:
    header = pydicom.dcmread(CT, stop_before_pixels=True)
    if accession is not None:
        header.AccessionNumber = accession
    return header


def ct_bytes_with_accession(tmp_path: Path) -> bytes:
    header = pydicom.dcmread(CT)
    header.AccessionNumber = ACCESSION
    target = tmp_path / "with-accession.dcm"
    header.save_as(target)
    return target.read_bytes()


def ai_output(study_uid: str) -> AIOutput:
    return AIOutput.model_validate(ai_output_fields(study_instance_uid=study_uid))


STUDY_UID = str(ct_header().StudyInstanceUID)


def test_csv_followup_and_dicom_prediction_of_a_study_share_the_case_pseudonym(
    site: Site,
) -> None:
    site.drop("a-ct.dcm", CT.read_bytes())
    site.drop("b-ai.json", ai_output(STUDY_UID).model_dump_json())
    site.drop("c-pathology.csv", f"Study UID,Result,Date\n{STUDY_UID},Cancer,2026-04-02\n")
    assert site.folder.scan_once() == 3
    (prediction,) = site.predictions()
    (followup,) = site.followups()
    assert followup.case_pseudonym == prediction.case_pseudonym == case_pseudonym(KEY, STUDY_UID)
    assert (followup.label, followup.source) == ("positive", "pathology")


def test_ai_output_before_its_study_waits_then_becomes_the_prediction(site: Site) -> None:
    assert site.intake.accept_ai_output(ai_output(STUDY_UID)) is None
    assert site.predictions() == []
    site.intake.accept_dicom(CT, ct_header())
    (prediction,) = site.predictions()
    assert prediction.acquisition.manufacturer == "GE MEDICAL SYSTEMS"
    assert site.cases.waiting_counts() == {"ai_output": 0, "followup": 0}


def test_followup_by_accession_waits_for_the_study_that_carries_it(site: Site) -> None:
    mapping = FhirFollowUpMapping(label_codes={"http://snomed.info/sct|363346000": "positive"})
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "value": ACCESSION}],
        "effectiveDateTime": "2026-04-02T08:00:00Z",
        "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "363346000"}]}],
    }
    from collectors.fhir_followups import parse_fhir_followups

    (record,) = parse_fhir_followups("r.json", report, mapping).records
    assert site.intake.accept_followup(record) is None
    assert (
        site.registry.get_sample_value("postmarket_collector_cases_waiting", {"kind": "followup"})
        == 1
    )
    site.intake.accept_dicom(CT, ct_header(accession=ACCESSION))
    site.intake.accept_ai_output(ai_output(STUDY_UID))
    (followup,) = site.followups()
    (prediction,) = site.predictions()
    assert followup.case_pseudonym == prediction.case_pseudonym


def test_hl7_result_in_the_inbox_links_by_accession(site: Site, tmp_path: Path) -> None:
    site.drop("a-ct.dcm", ct_bytes_with_accession(tmp_path))
    site.drop(
        "b-result.hl7",
        "MSH|^~\\&|LAB|H|PMS|H|20260402080000||ORU^R01|1|P|2.5\r"
        f"OBR|1||{ACCESSION}|||20260402080000\rOBX|1|ST|X||NEG||||||F\r",
    )
    assert site.folder.scan_once() == 2
    (followup,) = site.followups()
    assert followup.case_pseudonym == case_pseudonym(KEY, STUDY_UID)
    assert followup.label == "negative"


def test_the_case_index_holds_no_uid_or_accession(site: Site, tmp_path: Path) -> None:
    site.intake.accept_ai_output(ai_output("1.2.826.0.1.3680043.77.1"))
    site.intake.accept_dicom(CT, ct_header(accession=ACCESSION))
    site.cases.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cases.db*"))
    for identifier in (STUDY_UID, ACCESSION, "1.2.826.0.1.3680043.77.1"):
        assert identifier.encode() not in stored
    site.cases = CaseIndex(tmp_path / "cases.db")


def test_a_file_is_read_once_and_moved_out(site: Site) -> None:
    site.drop("ct.dcm", CT.read_bytes())
    assert site.folder.scan_once() == 1
    assert site.folder.scan_once() == 0
    assert list(site.inbox.path.iterdir()) == []
    assert (site.inbox.processed_dir / "ct.dcm").exists()


def test_unsettled_and_partial_files_are_left_alone(site: Site, tmp_path: Path) -> None:
    slow = InboxSettings(path=site.inbox.path, settle_seconds=3600)
    folder = WatchedFolder(slow, site.intake, MAPPINGS, site.metrics)
    site.drop("ct.dcm", CT.read_bytes())
    site.drop(".copying.dcm", CT.read_bytes())
    assert folder.scan_once() == 0
    assert site.folder.scan_once() == 1  # the hidden one is never taken


def test_bad_files_are_moved_aside_counted_and_do_not_block_the_rest(site: Site) -> None:
    site.drop("a-letter.dcm", "Dear colleague, ...")
    site.drop("b-truncated.dcm", CT.read_bytes()[:2001])
    site.drop("c-ai.json", json.dumps({"study_instance_uid": "1.2", "score": 7}))
    site.drop("d-ct.dcm", CT.read_bytes())
    assert site.folder.scan_once() == 4
    assert (site.rejected("not_dicom"), site.rejected("truncated")) == (1, 1)
    assert site.rejected("bad_ai_output") == 1
    reason = (site.inbox.rejected_dir / "a-letter.dcm.reason.txt").read_text()
    assert "a-letter.dcm" in reason and "not a DICOM file" in reason
    assert site.cases.acquisition(case_pseudonym(KEY, STUDY_UID)) is not None


def test_csv_with_wrong_columns_is_refused_whole(site: Site) -> None:
    site.drop("export.csv", f"Accession,Outcome,When\nX,{STUDY_UID},2026-01-01\n")
    site.folder.scan_once()
    assert site.rejected("wrong_columns") == 1
    assert (site.inbox.rejected_dir / "export.csv").exists()
    assert site.followups() == []


def test_csv_bad_rows_are_counted_and_good_rows_kept(site: Site) -> None:
    site.drop(
        "export.csv",
        f"Study UID,Result,Date\n{STUDY_UID},cancer,2026-04-02\n"
        f"{STUDY_UID},unclear,2026-04-02\n{STUDY_UID},no cancer,02/04/2026\n",
    )
    site.folder.scan_once()
    assert len(site.followups()) == 1
    assert site.rejected("bad_followup") == 2
    reasons = (site.inbox.rejected_dir / "export.csv.reason.txt").read_text()
    assert "export.csv: row 3: Result value 'unclear'" in reasons
    assert "export.csv: row 4: Date value '02/04/2026'" in reasons
    assert (site.inbox.processed_dir / "export.csv").exists()


def test_resending_a_study_does_not_repeat_its_prediction(site: Site) -> None:
    site.intake.accept_dicom(CT, ct_header())
    site.intake.accept_ai_output(ai_output(STUDY_UID))
    site.intake.accept_ai_output(ai_output(STUDY_UID))
    site.intake.accept_dicom(CT, ct_header())
    assert len(site.predictions()) == 1
