"""DICOM de-identification at the edge: PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the Retain Device Identity, Retain Longitudinal Temporal
Information with Modified Dates and Clean Descriptors options.

The action of every attribute comes from the generated Table E.1-1
(:mod:`collectors.confidentiality_profile`), so a new DICOM edition is a regeneration,
not an edit. Beyond the table, the walk is deliberately stricter than the standard asks:

* every private attribute is removed, at every depth;
* every nested sequence is walked, including sequences the table does not list, and the
  table applies inside them exactly as at the top level;
* attributes the table does not list are kept, except person names (emptied), dates
  (shifted like listed ones), AE titles and undecodable elements (removed), and pixel
  data (never forwarded: the collector reads headers only);
* a choice like ``X/Z/D`` is resolved to ``X`` (remove), the strictest, except for the
  identifiers that link a case over time (Patient ID, Accession Number, Study ID), which
  become keyed pseudonyms, and UIDs, which become ``2.25.<keyed HMAC>`` UIDs: the same
  study always maps to the same UID and nobody without the site key can reverse it.

Everything works in place on a pydicom :class:`~pydicom.dataset.Dataset`; reading and
sending are someone else's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import MAX_VALUE_LEN

from collectors import confidentiality_profile as table
from collectors.pseudonym import SiteKey, case_pseudonym

MAX_DATE_SHIFT_DAYS = 3650
"""Dates move back by 1..3650 days: one shift per patient, derived from the site key."""

PSEUDONYMISED_IDS = {
    0x00100020: "patient",  # PatientID
    0x00080050: "accession",  # AccessionNumber
    0x00200010: "study-id",  # StudyID
}
"""Identifiers replaced by a keyed pseudonym (not emptied) so records stay linkable."""

HEADER_ONLY_REMOVED = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Pixel data of every kind: the collector never forwards images."""

DUMMY_TEXT = "ANONYMIZED"
DUMMY_PERSON = "ANONYMOUS"
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_CLEANABLE_TEXT_VRS = frozenset({"LO", "SH", "ST", "CS", "UC"})
_IDENTIFYING_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "AE"})
_REMOVING_ACTIONS = frozenset({"X", "Z", "D", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})


@dataclass(frozen=True)
class MethodCode:
    """A CID 7050 (De-identification Method) code."""

    value: str
    meaning: str


BASIC_PROFILE_CODE = MethodCode("113100", "Basic Application Confidentiality Profile")
RETAIN_DEVICE_IDENTITY_CODE = MethodCode("113109", "Retain Device Identity Option")
RETAIN_MODIFIED_DATES_CODE = MethodCode(
    "113107", "Retain Longitudinal Temporal Information Modified Dates Option"
)
CLEAN_DESCRIPTORS_CODE = MethodCode("113105", "Clean Descriptors Option")


@dataclass(frozen=True)
class ProfileOptions:
    """Which Annex E options apply (all three by default: drift analysis needs them)."""

    retain_device_identity: bool = True
    retain_modified_dates: bool = True
    clean_descriptors: bool = True

    def method_codes(self) -> list[MethodCode]:
        """The CID 7050 codes of the profile and the options in use."""
        codes = [BASIC_PROFILE_CODE]
        if self.retain_device_identity:
            codes.append(RETAIN_DEVICE_IDENTITY_CODE)
        if self.retain_modified_dates:
            codes.append(RETAIN_MODIFIED_DATES_CODE)
        if self.clean_descriptors:
            codes.append(CLEAN_DESCRIPTORS_CODE)
        return codes


def action_table(options: ProfileOptions) -> dict[int, str]:
    """Tag -> action: the basic profile overlaid by each option's column.

    Dates are applied last: where Retain Device Identity keeps a calibration date and the
    modified-dates option modifies it, the date is shifted (the stricter of the two).
    """
    actions = dict(table.BASIC_PROFILE)
    if options.retain_device_identity:
        actions.update(table.RETAIN_DEVICE_IDENTITY)
    if options.clean_descriptors:
        actions.update(table.CLEAN_DESCRIPTORS)
    if options.retain_modified_dates:
        actions.update(table.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    return actions


def date_shift_days(key: SiteKey, patient_identity: str) -> int:
    """The patient's stable date shift (days back), unpredictable without the site key."""
    digest = key.digest("date-shift", patient_identity)
    return 1 + int.from_bytes(digest[:4], "big") % MAX_DATE_SHIFT_DAYS


def keyed_uid(key: SiteKey, uid: str) -> str:
    """A replacement UID under the 2.25 root (UUID-derived form, PS3.5 B.2)."""
    digest = key.digest("uid", uid.strip())
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def keyed_identifier(key: SiteKey, purpose: str, value: str, vr: str) -> str:
    """A keyed pseudonym of an identifier, short enough for its VR."""
    pseudonym = key.pseudonym(purpose, value.strip())
    return pseudonym[: MAX_VALUE_LEN.get(vr, 64)]


def shift_date(value: str, days: int) -> str | None:
    """A DA value ``YYYYMMDD`` moved back ``days``; None if it is not a full date."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:])) - timedelta(days=days)
    except ValueError:
        return None
    return moved.strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str | None:
    """A DT value moved back ``days`` (its time of day and offset kept); None if no date."""
    text = value.strip()
    moved = shift_date(text[:8], days)
    return None if moved is None else moved + text[8:]


_DATE_OR_TIME = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"  # 2019-03-04, 04/03/2019, 4.3.19
    r"|\d{1,2}:\d{2}(?::\d{2})?"  # 14:05, 14:05:33
    r"|\d{1,2}\s*(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s*\d{2,4}",
    re.IGNORECASE,
)
_HONORIFICS = frozenset({"DR", "MR", "MRS", "MS", "MISS", "PROF", "DOCTOR", "NURSE"})
_PUNCTUATION = "()[]{}<>.,;:'\"!?*#"


def identifying_tokens(text: str) -> set[str]:
    """Upper-case word parts of an identifying value (names, IDs, institutions)."""
    return {t for t in re.split(r"[\s^=,.;:/\\()'\"-]+", text.upper()) if len(t) >= 2}


def clean_descriptor(text: str, identifying: set[str]) -> str:
    """A descriptor with dates, long numbers and identifying words taken out.

    Keeps the clinical words ("CT CHEST W/O CONTRAST"); drops dates and times, any word
    with four or more digits (IDs, MRNs, phone numbers), names typed after a title
    ("Dr Smith"), words containing ``^`` (DICOM names) and any word that is part of a
    name, ID or institution elsewhere in the same header.
    """
    kept: list[str] = []
    after_title = False
    for word in _DATE_OR_TIME.sub(" ", text).split():
        bare = word.strip(_PUNCTUATION).upper()
        if after_title:
            after_title = False
            continue
        if bare in _HONORIFICS:
            after_title = True
            continue
        digits = sum(ch.isdigit() for ch in bare)
        parts = identifying_tokens(bare) or {bare}
        if digits >= 4 or "^" in word or "@" in word or parts & identifying:
            continue
        kept.append(word)
    return " ".join(kept)


@dataclass(frozen=True)
class Deidentified:
    """What de-identifying one header produced besides the header itself."""

    header: Dataset
    case_pseudonym: str | None
    """Keyed pseudonym of the original Study Instance UID (None if it had none)."""
    date_shift_days: int
    burned_in_annotation: bool | None
    """The header's Burned In Annotation flag: pixels may carry PHI (never forwarded)."""
    private_removed: int


@dataclass
class _Walk:
    """State of one de-identification: the patient's shift and identifying words."""

    shift: int
    identifying: set[str]
    private_removed: int = 0
    descriptors: list[tuple[Dataset, BaseTag, DataElement]] = field(default_factory=list)
    """Text to clean once every identifying word of the header is known."""


class Deidentifier:
    """De-identifies headers in place under one site key and one set of options."""

    def __init__(
        self, key: SiteKey, options: ProfileOptions | None = None, software: str = "postmarket"
    ) -> None:
        self.key = key
        self.options = options or ProfileOptions()
        self.software = software
        self._actions = action_table(self.options)

    def __repr__(self) -> str:
        return f"Deidentifier({self.options!r})"

    # --- the public operation -------------------------------------------------------------

    def deidentify(self, header: Dataset) -> Deidentified:
        """De-identify ``header`` in place (file meta included) and describe what was done."""
        study_uid = _text_of(header, 0x0020000D)
        burned_in = _text_of(header, 0x00280301)
        walk = _Walk(
            shift=date_shift_days(self.key, _patient_identity(header)),
            identifying=set(),
        )
        self._clean(header, walk)
        meta = getattr(header, "file_meta", None)
        if isinstance(meta, Dataset):
            self._clean(meta, walk)
        for dataset, tag, element in walk.descriptors:
            cleaned = [clean_descriptor(str(v), walk.identifying) for v in _values(element)]
            if tag in dataset:
                element.value = [c for c in cleaned if c] or None
        self._record_method(header)
        return Deidentified(
            header=header,
            case_pseudonym=case_pseudonym(self.key, study_uid) if study_uid else None,
            date_shift_days=walk.shift,
            burned_in_annotation=None if burned_in is None else burned_in.upper() == "YES",
            private_removed=walk.private_removed,
        )

    # --- the walk ---------------------------------------------------------------------------

    def _action(self, tag: int, vr: str) -> str:
        action = self._actions.get(tag)
        if action is not None:
            return action
        for mask, value, group_action in table.BASIC_PROFILE_REPEATING_GROUPS:
            if tag & mask == value:
                return group_action
        return self._unlisted_action(tag, vr)

    def _unlisted_action(self, tag: int, vr: str) -> str:
        if tag in HEADER_ONLY_REMOVED or (tag & 0xFFFF == 0 and tag >> 16 != 0x0002):
            return "X"  # pixels; group lengths would be wrong after editing
        if vr == "PN":
            return "Z"
        if vr in ("DA", "DT"):
            return "C" if self.options.retain_modified_dates else "X"
        if vr == "AE":
            return "X"
        return "K"

    def _collect_identifying(self, dataset: Dataset, words: set[str]) -> None:
        """Words of every name, ID and institution the profile removes, at any depth."""
        for tag in list(dataset.keys()):
            known = _undecoded_vr(dataset, tag)
            if known is not None and known != "SQ" and known not in _IDENTIFYING_TEXT_VRS:
                continue  # cannot hold a name or ID: no need to decode it
            element = _decoded(dataset, tag)
            if element is None:
                continue  # undecodable: removed by the walk
            vr = element.VR
            if vr == "SQ":
                for item in element.value or ():
                    self._collect_identifying(item, words)
                continue
            if vr not in _IDENTIFYING_TEXT_VRS:
                continue
            removed = self._action(int(tag), vr) in _REMOVING_ACTIONS
            if vr == "PN" or element.tag.is_private or removed:
                for value in _values(element):
                    words |= identifying_tokens(str(value))

    def _clean(self, dataset: Dataset, walk: _Walk) -> None:
        """Apply the table to every element, learning identifying words on the way.

        One pass: words of names and IDs are learnt from each element before its action
        (and from inside sequences that are removed whole); descriptors that need those
        words are cleaned after the pass, when all of them are known. Elements whose value
        can neither teach a word nor be changed are removed or kept without decoding.
        """
        for tag in list(dataset.keys()):
            known = _undecoded_vr(dataset, tag)
            if tag.is_private:
                if known is None or known == "SQ" or known in _IDENTIFYING_TEXT_VRS:
                    private = _decoded(dataset, tag)
                    if private is not None:
                        self._learn(private, "X", walk.identifying, private=True)
                del dataset[tag]
                walk.private_removed += 1
                continue
            if (
                known is not None
                and known != "SQ"
                and known not in _IDENTIFYING_TEXT_VRS
                and int(tag) not in PSEUDONYMISED_IDS
            ):
                action = self._action(int(tag), known)
                if action.startswith("X"):
                    del dataset[tag]
                    continue
                if action == "K":
                    continue
            element = _decoded(dataset, tag)
            if element is None:  # an undecodable element cannot be checked, so it goes
                del dataset[tag]
                continue
            action = self._action(int(tag), element.VR)
            self._learn(element, action, walk.identifying)
            self._apply(dataset, tag, element, action, walk)

    def _learn(
        self, element: DataElement, action: str, words: set[str], private: bool = False
    ) -> None:
        """Add the words of a name, ID or institution about to be removed (any depth)."""
        vr = element.VR
        if vr == "SQ":
            if private or action.startswith("X") or action in ("Z", "D", "Z/D"):
                for item in element.value or ():
                    self._collect_identifying(item, words)
            return  # sequences that are walked teach their words during the walk
        if vr in _IDENTIFYING_TEXT_VRS and (private or vr == "PN" or action in _REMOVING_ACTIONS):
            for value in _values(element):
                words |= identifying_tokens(str(value))

    def _apply(
        self, dataset: Dataset, tag: BaseTag, element: DataElement, action: str, walk: _Walk
    ) -> None:
        vr = element.VR
        if vr == "SQ":
            self._apply_to_sequence(dataset, tag, element, action, walk)
        elif int(tag) in PSEUDONYMISED_IDS and action not in ("K", "X"):
            purpose = PSEUDONYMISED_IDS[int(tag)]
            element.value = [
                keyed_identifier(self.key, purpose, str(v), vr) for v in _values(element)
            ] or None
        elif action == "K":
            return
        elif action.startswith("X"):
            del dataset[tag]
        elif action == "Z":
            element.value = None
        elif action == "U":
            element.value = [keyed_uid(self.key, str(v)) for v in _values(element)] or None
        elif action in ("D", "Z/D"):
            self._dummy(dataset, tag, element, walk)
        elif action == "C":
            self._clean_value(dataset, tag, element, walk)
        else:
            raise ValueError(f"unknown Table E.1-1 action {action!r} for {tag}")

    def _apply_to_sequence(
        self, dataset: Dataset, tag: BaseTag, element: DataElement, action: str, walk: _Walk
    ) -> None:
        if action.startswith("X"):
            del dataset[tag]
        elif action in ("Z", "D", "Z/D"):
            element.value = Sequence()  # a dummy sequence is an empty one
        else:  # K, C, U and unlisted sequences: the table applies inside every item
            for item in element.value or ():
                self._clean(item, walk)

    def _dummy(self, dataset: Dataset, tag: BaseTag, element: DataElement, walk: _Walk) -> None:
        vr = element.VR
        if vr == "PN":
            element.value = DUMMY_PERSON
        elif vr == "UI":
            element.value = [keyed_uid(self.key, str(v)) for v in _values(element)] or None
        elif vr in ("DA", "DT"):
            self._clean_value(dataset, tag, element, walk)
        elif vr == "TM":
            element.value = "000000"
        elif vr in _NUMERIC_VRS:
            element.value = 0
        elif vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UC", "UT"):
            element.value = DUMMY_TEXT[: MAX_VALUE_LEN.get(vr, len(DUMMY_TEXT))]
        else:  # binary and other VRs: a zero-length value
            element.value = None

    def _clean_value(
        self, dataset: Dataset, tag: BaseTag, element: DataElement, walk: _Walk
    ) -> None:
        vr = element.VR
        if vr in ("DA", "DT"):
            shift = shift_date if vr == "DA" else shift_datetime
            moved = [shift(str(v), walk.shift) for v in _values(element)]
            if any(m is None for m in moved):
                del dataset[tag]  # a partial or broken date cannot be shifted safely
            else:
                element.value = [m for m in moved if m is not None] or None
        elif vr in ("TM", *_NUMERIC_VRS):
            return  # times of day and numbers carry no identity once dates are shifted
        elif vr in _CLEANABLE_TEXT_VRS:
            walk.descriptors.append((dataset, tag, element))
        elif vr == "AE":
            element.value = keyed_identifier(self.key, "ae", str(element.value or ""), vr)
        elif vr == "UI":
            element.value = [keyed_uid(self.key, str(v)) for v in _values(element)] or None
        else:  # long free text and binary values cannot be cleaned reliably
            del dataset[tag]

    def _record_method(self, header: Dataset) -> None:
        codes = self.options.method_codes()
        header.PatientIdentityRemoved = "YES"
        header.DeidentificationMethod = [
            f"DICOM PS3.15 {table.EDITION} Annex E"[:64],
            *(code.meaning[:64] for code in codes[1:]),
            f"{self.software}: keyed HMAC-SHA256 UIDs and IDs"[:64],
        ]
        items = []
        for code in codes:
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = code.meaning
            items.append(item)
        header.DeidentificationMethodCodeSequence = Sequence(items)
        if self.options.retain_modified_dates:
            header.LongitudinalTemporalInformationModified = "MODIFIED"


def _undecoded_vr(dataset: Dataset, tag: BaseTag) -> str | None:
    """An element's VR without decoding its value; None when only decoding can tell.

    That is the VR written in the file (explicit VR) or the dictionary's (implicit VR),
    the same ones pydicom decodes with; ambiguous dictionary VRs (``US or SS``) and
    ``UN`` of a known tag are left to decoding, which resolves them.
    """
    item = dataset.get_item(tag)
    vr = getattr(item, "VR", None)
    if vr and vr != "UN":
        return str(vr)
    try:
        listed = dictionary_VR(tag)
    except KeyError:
        return "UN" if vr else None
    return None if " or " in listed or vr == "UN" else listed


def _decoded(dataset: Dataset, tag: BaseTag) -> DataElement | None:
    try:
        return dataset[tag]
    except Exception:
        return None


def _values(element: DataElement) -> list[Any]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [v for v in value if v is not None and v != ""]
    return [value]


def _text_of(header: Dataset, tag: int) -> str | None:
    try:
        element = header.get(tag)
    except Exception:
        return None
    value = getattr(element, "value", None)
    if value is None or isinstance(value, bytes | Sequence) or str(value).strip() == "":
        return None
    return str(value).strip()


def _patient_identity(header: Dataset) -> str:
    """What identifies the patient for the date shift: ID, else name and birth date, else
    the study (so each unidentified study at least shifts consistently within itself)."""
    patient_id = _text_of(header, 0x00100020)
    if patient_id:
        return "id:" + patient_id
    name, birth = _text_of(header, 0x00100010), _text_of(header, 0x00100030)
    if name:
        return f"name:{name}|{birth or ''}"
    return "study:" + (_text_of(header, 0x0020000D) or "")
