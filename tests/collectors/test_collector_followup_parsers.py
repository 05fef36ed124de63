"""Follow-up exports (CSV with a column mapping, FHIR DiagnosticReport, HL7 v2 ORU^R01)
become records, and every unusable row or message is refused naming file, place, reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from collectors.dicom_input import RejectedFile
from collectors.fhir_followups import parse_fhir_followups
from collectors.followups import followup_event, parse_csv_followups
from collectors.hl7_followups import parse_hl7_followups
from collectors.pseudonym import PseudonymKey
from collectors.settings import CsvFollowUpMapping, FhirFollowUpMapping, Hl7FollowUpMapping

KEY = PseudonymKey(b"followup-test-site-secret-0123456789abcdef")

PATHOLOGY = CsvFollowUpMapping(
    identifier_column="Accession",
    label_column="Diagnosis",
    label_values={"Malignant": "positive", "benign": "negative"},
    date_column="Report date",
    date_format="%d.%m.%Y",
    timezone="Europe/Berlin",
    source="pathology",
)
READS = CsvFollowUpMapping(
    identifier_column="StudyUID",
    identifier_kind="study_instance_uid",
    label_column="Finding",
    label_values={"1": "positive", "0": "negative"},
    date_column="Read at",
    date_format="%Y-%m-%d %H:%M",
    source="reader",
    reader_column="Reader",
    round_column="Round",
)


def test_csv_rows_become_records_with_mapped_label_and_zoned_date() -> None:
    text = "Accession,Diagnosis,Report date\nA1001,MALIGNANT ,03.04.2026\nA1002,benign,05.04.2026\n"
    parsed = parse_csv_followups("path.csv", text, PATHOLOGY)
    assert parsed.rejected == []
    first, second = parsed.records
    assert (first.identifier, first.label, first.source) == ("A1001", "positive", "pathology")
    assert second.label == "negative"
    assert first.event_time.utcoffset() == timedelta(hours=2)  # Berlin summer time


def test_csv_reads_carry_reader_and_round() -> None:
    text = "StudyUID,Finding,Read at,Reader,Round\n1.2.3,1,2026-04-03 10:15,dr-x,2\n"
    (record,) = parse_csv_followups("reads.csv", text, READS).records
    assert (record.reader_id, record.read_round, record.identifier_kind) == (
        "dr-x",
        "second",
        "study_instance_uid",
    )


def test_csv_without_a_mapped_column_is_refused_naming_it() -> None:
    text = "Accession,Result,Report date\nA1,benign,01.01.2026\n"
    with pytest.raises(RejectedFile) as refused:
        parse_csv_followups("export.csv", text, PATHOLOGY)
    assert refused.value.reason == "wrong_columns"
    assert "export.csv" in str(refused.value) and "'Diagnosis'" in str(refused.value)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("A1,maybe,01.01.2026", "Diagnosis value 'maybe' is not one of"),
        ("A1,benign,2026-01-01", "does not match '%d.%m.%Y'"),
        (",benign,01.01.2026", "Accession is empty"),
        ("A1,benign,01.01.2026,extra", "more cells than columns"),
    ],
)
def test_csv_bad_row_is_refused_with_its_row_number(row: str, reason: str) -> None:
    text = f"Accession,Diagnosis,Report date\nA0,benign,01.01.2026\n{row}\n"
    parsed = parse_csv_followups("export.csv", text, PATHOLOGY)
    assert len(parsed.records) == 1
    (refused,) = parsed.rejected
    assert refused.reason == "bad_followup"
    assert str(refused).startswith("export.csv: row 3: ") and reason in str(refused)


def test_csv_read_without_reader_is_refused() -> None:
    text = "StudyUID,Finding,Read at,Reader,Round\n1.2.3,1,2026-04-03 10:15,,1\n"
    (refused,) = parse_csv_followups("reads.csv", text, READS).rejected
    assert "needs the reader" in str(refused)


def test_csv_mapping_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of source"):
        CsvFollowUpMapping(
            identifier_column="a",
            label_column="b",
            label_values={"x": "positive"},
            date_column="c",
        )


def test_followup_event_pseudonymises_the_reader_and_is_stable() -> None:
    text = "StudyUID,Finding,Read at,Reader,Round\n1.2.3,1,2026-04-03 10:15,dr-x,1\n"
    (record,) = parse_csv_followups("reads.csv", text, READS).records
    event = followup_event(record, "c-abc", "site-a", KEY)
    assert event.reader_pseudonym is not None and "dr-x" not in event.reader_pseudonym
    assert event == followup_event(record, "c-abc", "site-a", KEY)


# --- FHIR -------------------------------------------------------------------------------------

SNOMED = "http://snomed.info/sct"
FHIR = FhirFollowUpMapping(
    label_codes={f"{SNOMED}|363346000": "positive", f"{SNOMED}|260385009": "negative"}
)


def diagnostic_report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                    ]
                },
                "value": "A2001",
            }
        ],
        "code": {"text": "Histopathology"},
        "effectiveDateTime": "2026-04-03T10:15:00+02:00",
        "conclusionCode": [{"coding": [{"system": SNOMED, "code": "363346000"}]}],
    }
    report.update(overrides)
    return report


def test_fhir_report_conclusion_code_maps_to_label() -> None:
    (record,) = parse_fhir_followups("r.json", diagnostic_report(), FHIR).records
    assert (record.identifier, record.label, record.source) == ("A2001", "positive", "pathology")
    assert record.event_time == datetime(2026, 4, 3, 8, 15, tzinfo=UTC)


def test_fhir_bundle_yields_each_report_and_refuses_a_preliminary_one() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": diagnostic_report()},
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": diagnostic_report(status="preliminary")},
        ],
    }
    parsed = parse_fhir_followups("b.json", json.loads(json.dumps(bundle)), FHIR)
    assert len(parsed.records) == 1
    (refused,) = parsed.rejected
    assert "b.json: entry 3: status 'preliminary' is not final" == str(refused)


def test_fhir_unmapped_conclusion_is_refused() -> None:
    report = diagnostic_report(conclusionCode=[{"coding": [{"system": SNOMED, "code": "1"}]}])
    (refused,) = parse_fhir_followups("r.json", report, FHIR).rejected
    assert "label_codes" in str(refused)


def test_fhir_other_resource_is_refused() -> None:
    with pytest.raises(RejectedFile, match="not DiagnosticReport"):
        parse_fhir_followups("o.json", {"resourceType": "Observation"}, FHIR)


# --- HL7 v2 -----------------------------------------------------------------------------------

HL7 = Hl7FollowUpMapping(
    label_values={"M-80003": "positive", "benign": "negative"}, observation_id="22634-0"
)


def oru(*obr_groups: str, message_type: str = "ORU^R01^ORU_R01") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PATHLAB|HOSP|PMS|HOSP|20260403101500||{message_type}|MSG0001|P|2.5.1",
            "PID|1||PAT123^^^HOSP^MR||DOE^JANE||19600101|F",
            *obr_groups,
        ]
    )


GROUP = (
    "OBR|1|ORD1|A3001|88305^Surgical pathology|||202604031015+0200"
    + "|" * 18
    + "F"
    + "|" * 7
    + "DR77^PATH^ANNA\r"
    "OBX|1|CWE|22634-0^Pathology report impression||M-80003^Neoplasm, malignant||||||F"
)


def test_hl7_oru_obx_value_maps_to_label() -> None:
    (record,) = parse_hl7_followups("m.hl7", oru(GROUP), HL7).records
    assert (record.identifier, record.label, record.reader_id) == ("A3001", "positive", "DR77")
    assert record.event_time == datetime(2026, 4, 3, 10, 15, tzinfo=timezone(timedelta(hours=2)))


def test_hl7_preliminary_observation_does_not_count() -> None:
    preliminary = GROUP.replace("||||||F", "||||||P")
    (refused,) = parse_hl7_followups("m.hl7", oru(preliminary), HL7).rejected
    assert str(refused) == "m.hl7: OBR 1: no final OBX value is in label_values"


def test_hl7_each_obr_is_one_followup() -> None:
    second = GROUP.replace("A3001", "A3002").replace("M-80003^Neoplasm, malignant", "^Benign")
    parsed = parse_hl7_followups("m.hl7", oru(GROUP, second), HL7)
    assert [(r.identifier, r.label) for r in parsed.records] == [
        ("A3001", "positive"),
        ("A3002", "negative"),
    ]


def test_hl7_escaped_and_mllp_framed_message_is_read() -> None:
    framed = "\x0b" + oru(GROUP.replace("A3001", "A3\\T\\001")) + "\x1c\r"
    (record,) = parse_hl7_followups("m.hl7", framed, HL7).records
    assert record.identifier == "A3&001"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (oru(GROUP, message_type="ADT^A01"), "message type ADT^A01 is not ORU^R01"),
        ("PID|1||x", "not an HL7 v2 message"),
        (oru(), "without an OBR segment"),
    ],
)
def test_hl7_wrong_message_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RejectedFile) as refused:
        parse_hl7_followups("m.hl7", text, HL7)
    assert reason in str(refused.value)
    assert refused.value.reason == "bad_followup" and str(refused.value).startswith("m.hl7: ")
