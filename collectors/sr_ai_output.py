"""AI device results delivered as DICOM SR (TID 1500 measurement reports) to :class:`AIOutput`.

The SR is read locally (it names the patient like any header) and only what an
``AIOutput`` holds is taken from it: its study, the score and decision found in its
content tree by the concepts the :class:`~collectors.settings.AiSrMapping` names, the
device version from its Software Versions and the time from its Content Date and Time.
The prediction event is then built exactly as for a JSON output.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from collectors.dicom_input import RejectedFile
from collectors.events import AIOutput
from collectors.followups import timezone_of
from collectors.settings import AiSrMapping
from postmarket.contracts.events import Label

SR_STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
"""Every Structured Report storage SOP class (Basic, Enhanced, Comprehensive, 3D...)."""


def is_structured_report(header: Dataset) -> bool:
    return str(header.get("SOPClassUID", "") or "").startswith(SR_STORAGE_PREFIX)


def content_items(dataset: Dataset) -> Iterator[Dataset]:
    """Every content item of an SR, depth first."""
    for item in dataset.get("ContentSequence", None) or ():
        yield item
        yield from content_items(item)


def concept_of(item: Dataset, attribute: str = "ConceptNameCodeSequence") -> str | None:
    """``scheme|code`` of an item's concept name (or of a CODE item's value)."""
    codes = item.get(attribute, None)
    if not codes:
        return None
    code = codes[0]
    return f"{code.get('CodingSchemeDesignator', '')}|{code.get('CodeValue', '')}"


def ai_output_from_sr(path: Path | str, header: Dataset, mapping: AiSrMapping) -> AIOutput:
    """The AI output an SR reports, or a rejection naming what is missing or wrong."""
    scores: list[float] = []
    decisions: list[Label] = []
    for item in content_items(header):
        value_type = item.get("ValueType")
        concept = concept_of(item)
        if value_type == "NUM" and concept == mapping.score_concept:
            measured = item.get("MeasuredValueSequence", None)
            if measured:
                try:
                    scores.append(float(measured[0].NumericValue))
                except (AttributeError, TypeError, ValueError):
                    raise RejectedFile(path, "bad_ai_output", "unreadable score value") from None
        elif value_type == "CODE" and concept == mapping.decision_concept:
            label = mapping.decision_values.get(concept_of(item, "ConceptCodeSequence") or "")
            if label is not None:
                decisions.append(label)
    if not scores:
        raise RejectedFile(path, "bad_ai_output", f"SR has no {mapping.score_concept} score")
    score = max(scores)
    if mapping.decision_concept is None:
        decision: Label = "positive" if score >= mapping.operating_threshold else "negative"
    elif decisions:
        decision = "positive" if "positive" in decisions else "negative"
    else:
        raise RejectedFile(
            path, "bad_ai_output", f"SR has no {mapping.decision_concept} finding mapped"
        )
    fields: dict[str, Any] = {
        "study_instance_uid": str(header.get("StudyInstanceUID", "") or ""),
        "device_id": mapping.device_id,
        "device_version": _first(header.get("SoftwareVersions", None)),
        "task": mapping.task,
        "score": score,
        "decision": decision,
        "operating_threshold": mapping.operating_threshold,
        "event_time": _content_time(header, timezone_of(mapping.timezone)),
        "study_design": mapping.study_design,
    }
    try:
        return AIOutput.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise RejectedFile(path, "bad_ai_output", f"invalid AI output in SR: {problems}") from None


def _first(value: Any) -> str:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else ""
    return str(value or "").strip()


def _content_time(header: Dataset, zone: tzinfo) -> datetime | None:
    """Content Date and Time, in the SR's Timezone Offset From UTC or the mapping's zone."""
    day = str(header.get("ContentDate", "") or "").strip()
    time_of_day = str(header.get("ContentTime", "") or "").strip().split(".")[0]
    try:
        moment = datetime.strptime(day + time_of_day.ljust(6, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    offset = str(header.get("TimezoneOffsetFromUTC", "") or "").strip()
    if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:]))
        return moment.replace(tzinfo=timezone(sign * delta))
    return moment.replace(tzinfo=zone)
