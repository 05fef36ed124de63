"""From a de-identified header and an AI device output to the event that leaves the site.

Pure functions: the CLI's ``check`` and the running collector call the same ones, so what
``check`` prints is byte for byte what would be sent. The ``event_id`` is derived from the
pseudonym key and the case, device, version and task, so re-reading the same inputs (after a
crash, or a PACS resending a study) yields the same event and is dropped as a duplicate.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydicom.dataset import Dataset

from collectors.acquisition import acquisition_features
from collectors.deidentify import Deidentifier
from collectors.dicom_input import RejectedFile, require_tags
from collectors.pseudonym import PseudonymKey
from postmarket import __version__
from postmarket.contracts import AcquisitionFeatures, Prediction
from postmarket.contracts.events import DeviceVersion, Identifier, Probability

COLLECTOR_VERSION = __version__[:32]


class AIOutput(BaseModel):
    """One AI device result for one study, as the device (or its gateway) writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_instance_uid: Annotated[str, Field(min_length=1, max_length=64)]
    device_id: Identifier
    device_version: DeviceVersion
    task: Identifier
    score: Probability
    decision: Literal["positive", "negative"]
    operating_threshold: Probability
    event_time: AwareDatetime
    study_design: Literal["prospective", "retrospective"] = "prospective"


@dataclass(frozen=True)
class DicomCase:
    """What one DICOM header contributes to an event, already de-identified."""

    case_pseudonym: str
    acquisition: AcquisitionFeatures
    burned_in_annotation: bool | None

    def as_json(self) -> str:
        return json.dumps(
            {
                "case_pseudonym": self.case_pseudonym,
                "acquisition": self.acquisition.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )


def dicom_case(path: Path | str, header: Dataset, deidentifier: Deidentifier) -> DicomCase:
    """De-identify ``header`` (in place) and extract its case pseudonym and features."""
    require_tags(path, header)
    result = deidentifier.deidentify(header)
    if result.case_pseudonym is None:  # require_tags checked it; a broken value lands here
        raise RejectedFile(path, "missing_tags", "Study Instance UID is unreadable")
    return DicomCase(
        case_pseudonym=result.case_pseudonym,
        acquisition=acquisition_features(header, deidentifier.key),
        burned_in_annotation=result.burned_in_annotation,
    )


def read_ai_output(path: Path) -> AIOutput:
    """Parse an AI output JSON file, or reject it naming the field at fault."""
    try:
        return AIOutput.model_validate_json(path.read_bytes())
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise RejectedFile(path, "bad_ai_output", f"invalid AI output: {problems}") from None


def prediction_event_id(key: PseudonymKey, case_pseudonym: str, output: AIOutput) -> uuid.UUID:
    """A stable, keyed event_id: the same case and result always give the same id."""
    identity = "|".join((case_pseudonym, output.device_id, output.device_version, output.task))
    return uuid.UUID(bytes=key.digest("event", identity)[:16], version=4)


def prediction_event(
    case: DicomCase, output: AIOutput, site_id: str, key: PseudonymKey
) -> Prediction:
    """The prediction event of one case, exactly as the collector sends it."""
    return Prediction(
        event_id=prediction_event_id(key, case.case_pseudonym, output),
        site_id=site_id,
        device_id=output.device_id,
        device_version=output.device_version,
        task=output.task,
        case_pseudonym=case.case_pseudonym,
        event_time=output.event_time,
        score=output.score,
        decision=output.decision,
        operating_threshold=output.operating_threshold,
        acquisition=case.acquisition,
        collector_version=COLLECTOR_VERSION,
        study_design=output.study_design,
    )
