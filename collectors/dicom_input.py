"""Reading one DICOM file's header, or saying precisely why it cannot be used.

Only the header is read (``stop_before_pixels``): pixels never leave the hospital and
are not needed for surveillance. A file that is not DICOM, is cut short, or lacks the
attributes a surveillance event needs raises :class:`RejectedFile`, whose message names
the file and the reason in words hospital IT can act on, and whose ``reason`` is the
label of the ``files rejected`` metric.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

RejectReason = Literal[
    "not_dicom",
    "truncated",
    "missing_tags",
    "unreadable",
    "bad_ai_output",
    "wrong_columns",
    "bad_followup",
    "too_large",
    "study_mismatch",
]
REJECT_REASONS: tuple[RejectReason, ...] = (
    "not_dicom",
    "truncated",
    "missing_tags",
    "unreadable",
    "bad_ai_output",
    "wrong_columns",
    "bad_followup",
    "too_large",
    "study_mismatch",
)
"""``wrong_columns``: a follow-up export lacks a mapped column (the whole file is refused);
``bad_followup``: one CSV row, FHIR report or HL7 result whose values cannot be used;
``too_large``: a file above its kind's size limit, refused before it is read;
``study_mismatch``: a STOW-RS instance posted to another study's URL."""

REQUIRED_KEYWORDS = ("StudyInstanceUID", "Modality")
"""Without the study UID there is no case pseudonym; without modality no stratum."""

_UNDEFINED_LENGTH = 0xFFFFFFFF


class RejectedFile(ValueError):
    """An input file the collector will not use, with the file and the reason."""

    def __init__(self, path: Path | str, reason: RejectReason, detail: str) -> None:
        self.path = str(path)
        self.reason: RejectReason = reason
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def read_header(path: Path) -> Dataset:
    """The header of a DICOM file (Part 10, or a bare dataset without preamble)."""
    try:
        header: Dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        header = _read_bare_dataset(path)
    except (EOFError, struct.error) as error:
        raise RejectedFile(path, "truncated", f"file ends inside the header ({error})") from None
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    except Exception as error:  # pydicom raises many types on malformed input
        raise RejectedFile(
            path, "unreadable", f"malformed DICOM ({type(error).__name__})"
        ) from None
    if len(header) == 0:
        raise RejectedFile(path, "truncated", "file ends before the first data element")
    if _last_element_cut_short(path, header):
        raise RejectedFile(path, "truncated", "file ends inside its last data element")
    return header


def require_tags(path: Path | str, header: Dataset) -> None:
    """Refuse a header without the attributes every surveillance event needs."""
    missing = [k for k in REQUIRED_KEYWORDS if not _has_value(header, k)]
    if missing:
        raise RejectedFile(path, "missing_tags", f"missing required tags: {', '.join(missing)}")


def _read_bare_dataset(path: Path) -> Dataset:
    """A dataset written without the Part 10 preamble, which some modalities still send.

    ``force`` parses anything, so the result is accepted only if it looks like an image
    header (a SOP Class UID under the DICOM root); a text file forced through does not.
    """
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        sop_class = str(header.get("SOPClassUID", "") or "")
    except Exception:
        sop_class = ""
    if not sop_class.startswith("1.2.840.10008."):
        raise RejectedFile(path, "not_dicom", "not a DICOM file (no DICM prefix, no SOP class)")
    return header


def _last_element_cut_short(path: Path, header: Dataset) -> bool:
    """Whether the file ends inside an element (pydicom drops a partial last element).

    pydicom stops early only at pixel data; so after the last element it parsed there
    must be nothing, or a pixel data tag. Anything else is the start of an element that
    was cut off.
    """
    tags = list(header.keys())
    meta = getattr(header, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if not tags or getattr(syntax, "is_deflated", False):
        return False  # file offsets of a deflated dataset are not stream offsets
    raw = header.get_item(tags[-1])
    if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED_LENGTH:
        return False
    if raw.value is not None and len(raw.value) < raw.length:
        return True
    end = raw.value_tell + raw.length
    with path.open("rb") as stream:
        stream.seek(end)
        following = stream.read(4)
    if not following:
        return False
    if len(following) < 4:
        return True
    group, _ = struct.unpack("<HH" if raw.is_little_endian else ">HH", following)
    return bool(group < 0x7FE0)


def _has_value(header: Dataset, keyword: str) -> bool:
    try:
        value = header.get(keyword)
    except Exception:
        return False
    return value is not None and str(value).strip() != ""
