"""Follow-ups from HL7 v2 ORU^R01 result messages, parsed with python-hl7 (``hl7``).

Each OBR (an order's result) gives at most one follow-up: the study identifier from the
configured field (``OBR-3`` filler order number by default; ``ORC-n`` and ``PID-n`` are
read from the segments before it), the label from the first final (``OBX-11`` F or C)
OBX whose ``OBX-5`` code or text the mapping lists, the time from ``OBR-7`` (else
``OBX-14``, else ``MSH-7``), and the reader from ``OBR-32``. Files in the inbox and
messages received over MLLP (:mod:`collectors.mllp_listener`) take the same functions.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

import hl7
from hl7 import containers as _hl7_containers
from hl7 import util as _hl7_util

from collectors.dicom_input import RejectedFile
from collectors.followups import (
    FollowUpRecord,
    ParsedFollowUps,
    check_reader_fields,
    timezone_of,
    valid_identifier,
)
from collectors.settings import Hl7FollowUpMapping
from postmarket.contracts.events import Label

# python-hl7 logs a value it cannot unescape, content and all: field content may be PHI,
# and a message it cannot use is reported by this module without its content.
_hl7_util.logger.disabled = True
_hl7_containers.logger.disabled = True

FINAL_RESULT_STATUSES = frozenset({"F", "C"})
RESULT_MESSAGE_TYPE = "ORU^R01"
_MLLP_FRAMING = "\x0b\x1c"
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_DTM = re.compile(
    r"^(?P<date>\d{4}(?:\d{2}(?:\d{2})?)?)(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?"
    r"(?P<zone>[+-]\d{4})?$"
)


def parse_message(text: str) -> hl7.Message:
    """One HL7 v2 message (MLLP framing and any line ending tolerated), or ValueError why not."""
    text = text.strip().strip(_MLLP_FRAMING).strip()
    if not text.startswith("MSH") or len(text) < 8:
        raise ValueError("does not start with an MSH segment")
    check_encoding_characters(text)
    # python-hl7 separates segments by CR only, as the standard does; files written on
    # other systems end their lines with LF or CR LF.
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    try:
        message = hl7.parse("\r".join(lines))
    except (hl7.HL7Exception, IndexError, ValueError, AssertionError) as error:
        # python-hl7 asserts on separators it cannot use; checked above, caught regardless.
        raise ValueError(str(error) or type(error).__name__) from None
    for number, segment in enumerate(message, start=1):
        if not _SEGMENT_NAME.fullmatch(str(segment[0])):  # its text is not shown: may be PHI
            raise ValueError(f"segment {number} does not start with a segment name")
    return message


def check_encoding_characters(text: str) -> None:
    """MSH-1 and MSH-2 must declare distinct separators (MSH-2 has a 5th from v2.7 on).

    >>> check_encoding_characters("MSH|^~\\\\&|LAB")
    >>> check_encoding_characters("MSH|^^\\\\&|LAB")
    Traceback (most recent call last):
    ValueError: MSH-2 does not hold 4 (or 5) encoding characters distinct from MSH-1
    """
    field = text[3]
    end = text.find(field, 4)
    declared = field + text[4 : end if end > 0 else len(text)]
    if (
        len(declared) not in (5, 6)
        or len(set(declared)) != len(declared)
        or any(c.isalnum() or c.isspace() for c in declared)
    ):
        raise ValueError("MSH-2 does not hold 4 (or 5) encoding characters distinct from MSH-1")


def component(segment: hl7.Segment, field: int, number: int = 1) -> str:
    """Component ``number`` of the field's first repetition, unescaped; "" when absent.

    Subcomponents beyond the first are dropped (an XCN's ID, a CWE's code).
    """
    try:
        value = segment.extract_field(field_num=field, component_num=number)
    except IndexError:  # python-hl7's answer for a component below a plain value
        return ""
    return str(value).strip()


def message_type(message: hl7.Message) -> str:
    """MSH-9 as ``code^trigger`` (``ORU^R01``), whatever message structure follows."""
    header = message[0]
    return f"{component(header, 9, 1)}^{component(header, 9, 2)}"


def control_id(message: hl7.Message) -> str:
    """MSH-10, which an acknowledgement repeats in MSA-2."""
    return component(message[0], 10)


def hl7_datetime(value: str, default_zone: tzinfo) -> datetime | None:
    """An HL7 DTM (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) as an aware datetime."""
    match = _DTM.match(value.strip())
    if match is None or len(match["date"]) < 8:
        return None  # a year or month alone is not a usable event time
    digits = match["date"] + (match["time"] or "")
    whole = digits.split(".")[0].ljust(14, "0")
    try:
        parsed = datetime.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    zone = match["zone"]
    if zone:
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return parsed.replace(tzinfo=timezone(sign * offset))
    return parsed.replace(tzinfo=default_zone)


def parse_hl7_followups(
    path: Path | str, text: str, mapping: Hl7FollowUpMapping
) -> ParsedFollowUps:
    """The follow-ups of one ORU^R01 message, one per OBR with a mapped final result."""
    try:
        message = parse_message(text)
    except ValueError as error:
        raise RejectedFile(path, "bad_followup", f"not an HL7 v2 message ({error})") from None
    return followups_of_message(path, message, mapping)


def followups_of_message(
    path: Path | str, message: hl7.Message, mapping: Hl7FollowUpMapping
) -> ParsedFollowUps:
    """The follow-ups of a parsed message; ``path`` names where it came from in errors."""
    header = message[0]
    kind = message_type(message)
    if kind != RESULT_MESSAGE_TYPE:
        raise RejectedFile(path, "bad_followup", f"message type {kind} is not ORU^R01")
    zone = timezone_of(mapping.timezone)
    id_segment, id_field = mapping.identifier_field.split("-")
    parsed = ParsedFollowUps()
    context: dict[str, hl7.Segment] = {}
    groups: list[tuple[hl7.Segment, dict[str, hl7.Segment], list[hl7.Segment]]] = []
    for segment in message[1:]:
        name = str(segment[0])
        if name == "OBR":
            groups.append((segment, dict(context), []))
        elif name == "OBX" and groups:
            groups[-1][2].append(segment)
        elif name in ("PID", "ORC"):
            context[name] = segment
    if not groups:
        raise RejectedFile(path, "bad_followup", "ORU^R01 without an OBR segment")
    for number, (obr, before, observations) in enumerate(groups, start=1):
        owner = obr if id_segment == "OBR" else before.get(id_segment)
        identifier = valid_identifier(component(owner, int(id_field)) if owner else "")
        if identifier is None:
            parsed.rejected.append(
                RejectedFile(
                    path, "bad_followup", f"OBR {number}: {mapping.identifier_field} is empty"
                )
            )
            continue
        label = _label(observations, mapping)
        if label is None:
            parsed.rejected.append(
                RejectedFile(
                    path, "bad_followup", f"OBR {number}: no final OBX value is in label_values"
                )
            )
            continue
        when = None
        for candidate in (
            component(obr, 7),
            *(component(obx, 14) for obx in observations),
            component(header, 7),
        ):
            if candidate and (when := hl7_datetime(candidate, zone)):
                break
        if when is None:
            parsed.rejected.append(
                RejectedFile(path, "bad_followup", f"OBR {number}: no readable result time")
            )
            continue
        reader_id = component(obr, 32) or None
        problem = check_reader_fields(mapping.source, reader_id, None)
        if problem is not None:
            parsed.rejected.append(RejectedFile(path, "bad_followup", f"OBR {number}: {problem}"))
            continue
        parsed.records.append(
            FollowUpRecord(
                identifier_kind=mapping.identifier_kind,
                identifier=identifier,
                label=label,
                source=mapping.source,
                event_time=when,
                reader_id=reader_id,
                blinded=mapping.blinded,
            )
        )
    return parsed


def read_hl7_file(path: Path, mapping: Hl7FollowUpMapping) -> ParsedFollowUps:
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    return parse_hl7_followups(path, text, mapping)


def _label(observations: list[hl7.Segment], mapping: Hl7FollowUpMapping) -> Label | None:
    for obx in observations:
        if component(obx, 11) not in FINAL_RESULT_STATUSES:
            continue
        if mapping.observation_id is not None and component(obx, 3) != mapping.observation_id:
            continue
        for number in (1, 2):
            label = mapping.label_values.get(component(obx, 5, number).casefold())
            if label is not None:
                return label
    return None
