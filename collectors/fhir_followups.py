"""Follow-ups from FHIR R4 ``DiagnosticReport`` JSON (a report, or a Bundle of them).

The study is named by an ``identifier`` (by default the one typed ``ACSN``, the accession
number, or the one whose ``system`` the mapping names); the label comes from the first
``conclusionCode`` coding listed in the mapping as ``system|code``; the time is
``effectiveDateTime``, else ``issued``. Only final reports count (``final``, ``amended``,
``corrected``, ``appended``): a preliminary report is not ground truth yet.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from collectors.dicom_input import RejectedFile
from collectors.followups import (
    FollowUpRecord,
    ParsedFollowUps,
    check_reader_fields,
    valid_identifier,
)
from collectors.settings import FhirFollowUpMapping

FINAL_STATUSES = frozenset({"final", "amended", "corrected", "appended"})
ACCESSION_TYPE_CODE = "ACSN"
STUDY_UID_SYSTEM = "urn:dicom:uid"


def parse_fhir_followups(
    path: Path | str, document: Any, mapping: FhirFollowUpMapping
) -> ParsedFollowUps:
    """The follow-ups in a decoded FHIR JSON document."""
    if not isinstance(document, dict):
        raise RejectedFile(path, "bad_followup", "FHIR document is not a JSON object")
    kind = document.get("resourceType")
    if kind == "Bundle":
        entries = document.get("entry") or []
        resources = [entry.get("resource") for entry in entries if isinstance(entry, dict)]
    elif kind == "DiagnosticReport":
        resources = [document]
    else:
        raise RejectedFile(
            path, "bad_followup", f"resourceType {kind!r} is not DiagnosticReport or Bundle"
        )
    parsed = ParsedFollowUps()
    for position, resource in enumerate(resources, start=1):
        where = "report" if kind == "DiagnosticReport" else f"entry {position}"
        if not isinstance(resource, dict) or resource.get("resourceType") != "DiagnosticReport":
            continue  # a Bundle may carry Patients, Observations...: not ours to judge
        problem, record = _report_record(resource, mapping)
        if record is None:
            parsed.rejected.append(RejectedFile(path, "bad_followup", f"{where}: {problem}"))
        else:
            parsed.records.append(record)
    return parsed


def read_fhir_file(path: Path, mapping: FhirFollowUpMapping) -> ParsedFollowUps:
    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    except ValueError as error:
        raise RejectedFile(path, "bad_followup", f"not valid JSON ({error})") from None
    return parse_fhir_followups(path, document, mapping)


def _report_record(
    report: dict[str, Any], mapping: FhirFollowUpMapping
) -> tuple[str, FollowUpRecord | None]:
    status = report.get("status")
    if status not in FINAL_STATUSES:
        return f"status {status!r} is not final", None
    identifier = _study_identifier(report, mapping)
    if identifier is None:
        wanted = mapping.identifier_system or f"type {ACCESSION_TYPE_CODE}"
        return f"no study identifier ({wanted})", None
    label = None
    for concept in _list(report.get("conclusionCode")):
        for coding in _list(concept.get("coding") if isinstance(concept, dict) else None):
            if isinstance(coding, dict):
                label = mapping.label_codes.get(f"{coding.get('system')}|{coding.get('code')}")
            if label is not None:
                break
        if label is not None:
            break
    if label is None:
        return "no conclusionCode coding is in label_codes", None
    when_text = report.get("effectiveDateTime") or report.get("issued")
    when = _fhir_datetime(when_text)
    if when is None:
        return f"effectiveDateTime/issued {when_text!r} is not a date-time with a zone", None
    reader_id = None
    for interpreter in _list(report.get("resultsInterpreter")):
        if isinstance(interpreter, dict) and isinstance(interpreter.get("reference"), str):
            reader_id = interpreter["reference"]
            break
    problem = check_reader_fields(mapping.source, reader_id, None)
    if problem is not None:
        return problem, None
    return "", FollowUpRecord(
        identifier_kind=mapping.identifier_kind,
        identifier=identifier,
        label=label,
        source=mapping.source,
        event_time=when,
        reader_id=reader_id,
        blinded=mapping.blinded,
    )


def _study_identifier(report: dict[str, Any], mapping: FhirFollowUpMapping) -> str | None:
    for identifier in _list(report.get("identifier")):
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        system = identifier.get("system")
        if mapping.identifier_system is not None:
            matches = system == mapping.identifier_system
        elif mapping.identifier_kind == "study_instance_uid":
            matches = system == STUDY_UID_SYSTEM
        else:
            codes = [
                coding.get("code")
                for coding in _list((identifier.get("type") or {}).get("coding"))
                if isinstance(coding, dict)
            ]
            matches = ACCESSION_TYPE_CODE in codes
        if matches:
            value = identifier["value"]
            if value.startswith("urn:oid:"):
                value = value[len("urn:oid:") :]
            return valid_identifier(value)
    return None


def _fhir_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
