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
  study always maps to the same UID and nobody without the pseudonym key can reverse it.

Everything works in place on a pydicom :class:`~pydicom.dataset.Dataset`; reading and
sending are someone else's job. The table is compiled once per (tag, VR) into a plan, and
a value pydicom has not decoded yet is decoded only when it must be read: a name or ID to
learn from, a value to change, a sequence to walk (see ``_Plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import MAX_VALUE_LEN

from collectors import confidentiality_profile as table
from collectors.deidentify_profile import MethodCode, ProfileOptions, action_table
from collectors.deidentify_values import (
    clean_descriptor,
    date_shift_days,
    identifying_tokens,
    keyed_identifier,
    keyed_uid,
    shift_date,
)
from collectors.dicom_elements import (
    assign_values,
    decoded_element,
    decoding_cannot_fail,
    element_values,
    raw_vr,
    store_values,
    stored_vr,
    text_of,
)
from collectors.pseudonym import PseudonymKey, case_pseudonym

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
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
"""VRs that pydicom decodes as text (see ``decoding_cannot_fail``)."""
_REMOVING_ACTIONS = frozenset({"X", "Z", "D", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})


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
    uids: dict[str, str] = field(default_factory=dict)
    """Keyed UIDs already computed for this header (a study's UIDs repeat in it)."""
    dates: dict[str, str | None] = field(default_factory=dict)
    """Shifted dates already computed for this header (its dates repeat too)."""
    lenient: bool = False
    """pydicom's decoding of text cannot fail (see ``decoding_cannot_fail``)."""


# Operations: what the walk does to one element (the table's actions resolved per VR).
_KEEP = 0
_REMOVE = 1
_EMPTY = 2
_KEYED_UID = 3
_SHIFT_DATE = 4
_DUMMY = 5
_DESCRIPTOR = 6
_AE_PSEUDONYM = 7
_ID_PSEUDONYM = 8
_WALK_ITEMS = 9
_EMPTY_SEQUENCE = 10

# When an element's value is decoded: see _Plan.decode.
_ALWAYS = 0
_UNLESS_LENIENT = 1
_NEVER = 2

_PLAN_CACHE_LIMIT = 65536
"""Plans are cached per (tag, VR); a stream of made-up tags must not grow them forever."""


class _Plan(NamedTuple):
    """The walk's treatment of one (tag, VR), derived once from the table and cached.

    Only the value is per element; what to do with it is not, so the table, the
    repeating groups and the unlisted-attribute rules are consulted once per tag.
    """

    operation: int
    learn: bool
    """Its words are identifying (for a sequence: every word inside it)."""
    decode: int
    """When the value is decoded before the operation: ``_NEVER`` for removing or
    keeping what cannot teach a word; ``_UNLESS_LENIENT`` for keeping or removing other
    text, decoded only to find undecodable values, which pydicom's lenient default
    set-up never produces (see ``decoding_cannot_fail``); else ``_ALWAYS``."""


class Deidentifier:
    """De-identifies headers in place under one pseudonym key and one set of options."""

    def __init__(
        self, key: PseudonymKey, options: ProfileOptions | None = None, software: str = "postmarket"
    ) -> None:
        self.key = key
        self.options = options or ProfileOptions()
        self.software = software
        self._actions = action_table(self.options)
        self._plans: dict[tuple[int, str], _Plan] = {}

    def __repr__(self) -> str:
        return f"Deidentifier({self.options!r})"

    # --- the public operation -------------------------------------------------------------

    def deidentify(self, header: Dataset) -> Deidentified:
        """De-identify ``header`` in place (file meta included) and describe what was done."""
        study_uid = text_of(header, 0x0020000D)
        burned_in = text_of(header, 0x00280301)
        walk = _Walk(
            shift=date_shift_days(self.key, _patient_identity(header)),
            identifying=set(),
            lenient=decoding_cannot_fail(),
        )
        self._clean(header, walk)
        meta = getattr(header, "file_meta", None)
        if isinstance(meta, Dataset):
            self._clean(meta, walk)
        for dataset, tag, element in walk.descriptors:
            cleaned = [clean_descriptor(str(v), walk.identifying) for v in element_values(element)]
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

    # --- the table, compiled per (tag, VR) --------------------------------------------------

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

    def _plan(self, tag: int, vr: str) -> _Plan:
        """The cached plan of a (public) tag with this VR."""
        plan = self._plans.get((tag, vr))
        if plan is None:
            if len(self._plans) >= _PLAN_CACHE_LIMIT:
                self._plans.clear()
            plan = self._plans[(tag, vr)] = self._compile(tag, vr)
        return plan

    def _compile(self, tag: int, vr: str) -> _Plan:
        action = self._action(tag, vr)
        removed = action.startswith("X")
        if vr == "SQ":
            if removed:
                return _Plan(_REMOVE, learn=True, decode=_ALWAYS)
            if action in ("Z", "D", "Z/D"):  # a dummy sequence is an empty one
                return _Plan(_EMPTY_SEQUENCE, learn=True, decode=_ALWAYS)
            # K, C, U and unlisted sequences: the table applies inside every item
            return _Plan(_WALK_ITEMS, learn=False, decode=_ALWAYS)
        learn = vr in _IDENTIFYING_TEXT_VRS and (vr == "PN" or action in _REMOVING_ACTIONS)
        operation = self._operation(tag, vr, action)
        if (removed or action == "K") and not (
            vr in _IDENTIFYING_TEXT_VRS or tag in PSEUDONYMISED_IDS
        ):
            decode = _NEVER
        elif operation in (_KEEP, _REMOVE) and not learn and vr in _TEXT_VRS:
            decode = _UNLESS_LENIENT
        else:
            decode = _ALWAYS
        return _Plan(operation, learn, decode)

    def _operation(self, tag: int, vr: str, action: str) -> int:
        if tag in PSEUDONYMISED_IDS and action not in ("K", "X"):
            return _ID_PSEUDONYM
        if action == "K":
            return _KEEP
        if action.startswith("X"):
            return _REMOVE
        if action == "Z":
            return _EMPTY
        if action == "U":
            return _KEYED_UID
        if action in ("D", "Z/D"):
            if vr in ("UI", "DA", "DT"):
                return _clean_operation(vr)
            if vr in ("PN", "TM", "AE", "CS", "SH", "LO", "LT", "ST", "UC", "UT", *_NUMERIC_VRS):
                return _DUMMY
            return _EMPTY  # binary and other VRs: a zero-length value
        if action == "C":
            return _clean_operation(vr)
        raise ValueError(f"unknown Table E.1-1 action {action!r} for {BaseTag(tag)}")

    # --- the walk ---------------------------------------------------------------------------

    def _clean(self, dataset: Dataset, walk: _Walk) -> None:
        """Apply the table to every element, learning identifying words on the way.

        One pass: words of names and IDs are learnt from each element before its action
        (and from inside sequences that are removed whole); descriptors that need those
        words are cleaned after the pass, when all of them are known. Elements whose value
        can neither teach a word nor be changed are removed or kept without decoding.
        """
        plans = self._plans
        for tag, stored in list(dataset.items()):
            number = int(tag)  # plain int: BaseTag compares in Python, slowly
            # Inlined stored_vr and _plan: this loop runs for every element of a header.
            element: DataElement | None
            vr: str | None
            if isinstance(stored, DataElement):
                element, vr = stored, stored.VR
            else:
                element, vr = None, stored.VR
                if not vr or vr == "UN":
                    vr = raw_vr(number, vr)
            if number >> 16 & 1:  # private group
                if vr is None or vr == "SQ" or vr in _IDENTIFYING_TEXT_VRS:
                    if element is None:
                        element = decoded_element(dataset, tag)
                    if element is not None:
                        self._learn_private(element, walk.identifying)
                del dataset[tag]
                walk.private_removed += 1
                continue
            plan = None if vr is None else plans.get((number, vr)) or self._plan(number, vr)
            if plan is not None and plan.decode != _ALWAYS:
                if plan.decode == _NEVER or (
                    walk.lenient and (element is not None or stored.value is not None)
                ):
                    if plan.operation == _REMOVE:
                        del dataset[tag]
                    continue  # else kept
            if (
                element is None
                and plan is not None
                and plan.operation in (_KEYED_UID, _SHIFT_DATE)
                and walk.lenient
                and self._replace_undecoded(dataset, tag, vr, stored.value, plan.operation, walk)
            ):
                continue
            if element is None:
                element = decoded_element(dataset, tag)
            if element is None:  # an undecodable element cannot be checked, so it goes
                del dataset[tag]
                continue
            if plan is None or element.VR != vr:
                plan = self._plan(number, element.VR)
            if plan.learn:
                self._learn(element, walk.identifying)
            if plan.operation != _KEEP:
                self._apply(dataset, tag, element, plan.operation, walk)

    def _learn(self, element: DataElement, words: set[str]) -> None:
        """Add the words of a name, ID or institution about to be removed (any depth)."""
        if element.VR == "SQ":
            for item in element.value or ():
                self._collect_identifying(item, words)
            return
        for value in element_values(element):
            words |= identifying_tokens(str(value))

    def _learn_private(self, element: DataElement, words: set[str]) -> None:
        if element.VR == "SQ" or element.VR in _IDENTIFYING_TEXT_VRS:
            self._learn(element, words)

    def _collect_identifying(self, dataset: Dataset, words: set[str]) -> None:
        """Words of every name, ID and institution the profile removes, at any depth."""
        for tag, stored in list(dataset.items()):
            number = int(tag)
            element, known = stored_vr(number, stored)
            if known is not None and known != "SQ" and known not in _IDENTIFYING_TEXT_VRS:
                continue  # cannot hold a name or ID: no need to decode it
            if element is None:
                element = decoded_element(dataset, tag)
            if element is None:
                continue  # undecodable: removed by the walk
            vr = element.VR
            if vr == "SQ":
                for item in element.value or ():
                    self._collect_identifying(item, words)
                continue
            if vr not in _IDENTIFYING_TEXT_VRS:
                continue
            if number >> 16 & 1 or self._plan(number, vr).learn:
                for value in element_values(element):
                    words |= identifying_tokens(str(value))

    def _replace_undecoded(
        self,
        dataset: Dataset,
        tag: BaseTag,
        vr: str | None,
        encoded: object,
        operation: int,
        walk: _Walk,
    ) -> bool:
        """Replace a single UID or date straight from its bytes; False if it is not one.

        These VRs are ASCII in every character set, and pydicom's decoding of them is a
        strip of padding (see ``convert_UI``, ``convert_string``): doing just that here
        skips building an element that would be replaced at once.
        """
        if not isinstance(encoded, bytes) or b"\\" in encoded:
            return False
        if operation == _KEYED_UID and vr == "UI":
            uid = encoded.decode("latin-1").rstrip("\0 ").strip()
            if not uid:
                return store_values(dataset, tag, vr, [])
            keyed = walk.uids.get(uid)
            if keyed is None:
                keyed = walk.uids[uid] = keyed_uid(self.key, uid)
            return store_values(dataset, tag, vr, [keyed])
        if operation == _SHIFT_DATE and vr in ("DA", "DT"):
            text = encoded.decode("latin-1").rstrip(" \0")
            moved = _shift_once(text, vr, walk) if text else ""
            if moved is None:
                del dataset[tag]  # a partial or broken date cannot be shifted safely
                return True
            return store_values(dataset, tag, vr, [moved] if moved else [])
        return False

    def _apply(
        self, dataset: Dataset, tag: BaseTag, element: DataElement, operation: int, walk: _Walk
    ) -> None:
        vr = element.VR
        if operation == _REMOVE:
            del dataset[tag]
        elif operation == _WALK_ITEMS:
            for item in element.value or ():
                self._clean(item, walk)
        elif operation == _EMPTY:
            assign_values(dataset, tag, element, [])
        elif operation == _KEYED_UID:
            uids = walk.uids
            replaced = []
            for value in element_values(element):
                uid = str(value)
                keyed = uids.get(uid)
                if keyed is None:
                    keyed = uids[uid] = keyed_uid(self.key, uid)
                replaced.append(keyed)
            assign_values(dataset, tag, element, replaced)
        elif operation == _SHIFT_DATE:
            moved = [_shift_once(str(v), vr, walk) for v in element_values(element)]
            if any(m is None for m in moved):
                del dataset[tag]  # a partial or broken date cannot be shifted safely
            else:
                assign_values(dataset, tag, element, [m for m in moved if m is not None])
        elif operation == _DESCRIPTOR:
            walk.descriptors.append((dataset, tag, element))
        elif operation == _ID_PSEUDONYM:
            purpose = PSEUDONYMISED_IDS[tag]
            assign_values(
                dataset,
                tag,
                element,
                [keyed_identifier(self.key, purpose, str(v), vr) for v in element_values(element)],
            )
        elif operation == _EMPTY_SEQUENCE:
            element.value = Sequence()
        elif operation == _AE_PSEUDONYM:
            element.value = keyed_identifier(self.key, "ae", str(element.value or ""), vr)
        elif operation == _DUMMY:
            element.value = _dummy_value(vr)
        else:  # pragma: no cover - every plan names one of the above
            raise AssertionError(f"unknown operation {operation} for {tag}")

    def _record_method(self, header: Dataset) -> None:
        """Write PatientIdentityRemoved, DeidentificationMethod and its code sequence.

        Elements are built by tag: the keyword path would look each one up and validate
        values that are the same, and valid, on every header.
        """
        codes = self.options.method_codes()
        method = [
            f"DICOM PS3.15 {table.EDITION} Annex E"[:64],
            *(code.meaning[:64] for code in codes[1:]),
            f"{self.software}: keyed HMAC-SHA256 UIDs and IDs"[:64],
        ]
        header[_PATIENT_IDENTITY_REMOVED] = DataElement(
            _PATIENT_IDENTITY_REMOVED, "CS", "YES", already_converted=True
        )
        header[_DEIDENTIFICATION_METHOD] = DataElement(
            _DEIDENTIFICATION_METHOD, "LO", MultiValue(str, method), already_converted=True
        )
        header[_DEIDENTIFICATION_METHOD_CODES] = DataElement(
            _DEIDENTIFICATION_METHOD_CODES, "SQ", Sequence([_code_item(code) for code in codes])
        )
        if self.options.retain_modified_dates:
            header[_TEMPORAL_INFORMATION_MODIFIED] = DataElement(
                _TEMPORAL_INFORMATION_MODIFIED, "CS", "MODIFIED", already_converted=True
            )


_PATIENT_IDENTITY_REMOVED = BaseTag(0x00120062)
_DEIDENTIFICATION_METHOD = BaseTag(0x00120063)
_DEIDENTIFICATION_METHOD_CODES = BaseTag(0x00120064)
_TEMPORAL_INFORMATION_MODIFIED = BaseTag(0x00280303)
_CODE_VALUE = BaseTag(0x00080100)
_CODING_SCHEME = BaseTag(0x00080102)
_CODE_MEANING = BaseTag(0x00080104)


def _code_item(code: MethodCode) -> Dataset:
    """A code sequence item (value, scheme DCM, meaning)."""
    return Dataset(
        {
            _CODE_VALUE: DataElement(_CODE_VALUE, "SH", code.value, already_converted=True),
            _CODING_SCHEME: DataElement(_CODING_SCHEME, "SH", "DCM", already_converted=True),
            _CODE_MEANING: DataElement(_CODE_MEANING, "LO", code.meaning, already_converted=True),
        }
    )


def _shift_once(value: str, vr: str, walk: _Walk) -> str | None:
    """``shift_date`` / ``shift_datetime``, computed once per value and header."""
    text = value.strip()
    day = text[:8] if vr == "DT" else text
    if day in walk.dates:
        moved = walk.dates[day]
    else:
        moved = walk.dates[day] = shift_date(day, walk.shift)
    if moved is None or vr != "DT":
        return moved
    return moved + text[8:]  # a DT keeps its time of day and offset


def _clean_operation(vr: str) -> int:
    """What cleaning (``C``) does to a value of this VR."""
    if vr in ("DA", "DT"):
        return _SHIFT_DATE
    if vr == "TM" or vr in _NUMERIC_VRS:
        return _KEEP  # times of day and numbers carry no identity once dates are shifted
    if vr in _CLEANABLE_TEXT_VRS:
        return _DESCRIPTOR
    if vr == "AE":
        return _AE_PSEUDONYM
    if vr == "UI":
        return _KEYED_UID
    return _REMOVE  # long free text and binary values cannot be cleaned reliably


def _dummy_value(vr: str) -> object:
    if vr == "PN":
        return DUMMY_PERSON
    if vr == "TM":
        return "000000"
    if vr in _NUMERIC_VRS:
        return 0
    return DUMMY_TEXT[: MAX_VALUE_LEN.get(vr, len(DUMMY_TEXT))]


def _patient_identity(header: Dataset) -> str:
    """What identifies the patient for the date shift: ID, else name and birth date, else
    the study (so each unidentified study at least shifts consistently within itself)."""
    patient_id = text_of(header, 0x00100020)
    if patient_id:
        return "id:" + patient_id
    name, birth = text_of(header, 0x00100010), text_of(header, 0x00100030)
    if name:
        return f"name:{name}|{birth or ''}"
    return "study:" + (text_of(header, 0x0020000D) or "")
