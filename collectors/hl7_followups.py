"""Follow-ups from HL7 v2 ORU^R01 result messages, parsed here (no HL7 library needed).

Each OBR (an order's result) gives at most one follow-up: the study identifier from the
configured field (``OBR-3`` filler order number by default; ``ORC-n`` and ``PID-n`` are
read from the segments before it), the label from the first final (``OBX-11`` F or C)
OBX whose ``OBX-5`` code or text the mapping lists, the time from ``OBR-7`` (else
``OBX-14``, else ``MSH-7``), and the reader from ``OBR-32``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

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

FINAL_RESULT_STATUSES = frozenset({"F", "C"})
_MLLP_FRAMING = "\x0b\x1c"
_DTM = re.compile(
    r"^(?P<date>\d{4}(?:\d{2}(?:\d{2})?)?)(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?"
    r"(?P<zone>[+-]\d{4})?$"
)


@dataclass(frozen=True)
class Delimiters:
    """The separators a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    def unescape(self, text: str) -> str:
        if self.escape not in text:
            return text
        e = self.escape
        for code, character in (
            ("F", self.field),
            ("S", self.component),
            ("T", self.subcomponent),
            ("R", self.repetition),
            ("E", self.escape),
        ):
            text = text.replace(f"{e}{code}{e}", character)
        return text


@dataclass(frozen=True)
class Segment:
    """One segment; ``field(n)`` is HL7's field n (MSH-1, the separator, is stored as one)."""

    name: str
    fields: tuple[str, ...]
    delimiters: Delimiters

    def field(self, number: int) -> str:
        return self.fields[number] if 0 <= number < len(self.fields) else ""

    def component(self, number: int, component: int = 1) -> str:
        """Component of the first repetition, unescaped; subcomponents beyond the first
        are dropped (an XCN's ID, a CWE's code)."""
        value = self.field(number).split(self.delimiters.repetition)[0]
        parts = value.split(self.delimiters.component)
        text = parts[component - 1] if component <= len(parts) else ""
        return self.delimiters.unescape(text.split(self.delimiters.subcomponent)[0]).strip()


def parse_segments(text: str) -> list[Segment]:
    """The segments of one message (MLLP framing and any line ending tolerated)."""
    text = text.strip().strip(_MLLP_FRAMING).strip()
    if not text.startswith("MSH") or len(text) < 8:
        raise ValueError("does not start with an MSH segment")
    delimiters = Delimiters(
        field=text[3],
        component=text[4],
        repetition=text[5],
        escape=text[6],
        subcomponent=text[7] if text[7] != text[3] else "&",
    )
    segments = []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line.strip():
            continue
        parts = line.split(delimiters.field)
        if parts[0] == "MSH":
            parts = ["MSH", delimiters.field, *parts[1:]]
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", parts[0]):
            raise ValueError(f"{parts[0][:10]!r} is not a segment name")
        segments.append(Segment(parts[0], tuple(parts), delimiters))
    return segments


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
        segments = parse_segments(text)
    except (ValueError, IndexError) as error:
        raise RejectedFile(path, "bad_followup", f"not an HL7 v2 message ({error})") from None
    header = segments[0]
    message_type = f"{header.component(9, 1)}^{header.component(9, 2)}"
    if message_type != "ORU^R01":
        raise RejectedFile(path, "bad_followup", f"message type {message_type} is not ORU^R01")
    zone = timezone_of(mapping.timezone)
    id_segment, id_field = mapping.identifier_field.split("-")
    parsed = ParsedFollowUps()
    context: dict[str, Segment] = {}
    groups: list[tuple[Segment, dict[str, Segment], list[Segment]]] = []
    for segment in segments[1:]:
        if segment.name == "OBR":
            groups.append((segment, dict(context), []))
        elif segment.name == "OBX" and groups:
            groups[-1][2].append(segment)
        elif segment.name in ("PID", "ORC"):
            context[segment.name] = segment
    if not groups:
        raise RejectedFile(path, "bad_followup", "ORU^R01 without an OBR segment")
    for number, (obr, before, observations) in enumerate(groups, start=1):
        owner = obr if id_segment == "OBR" else before.get(id_segment)
        identifier = valid_identifier(owner.component(int(id_field)) if owner else "")
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
            obr.field(7),
            *(obx.field(14) for obx in observations),
            header.field(7),
        ):
            if candidate and (
                when := hl7_datetime(candidate.split(obr.delimiters.component)[0], zone)
            ):
                break
        if when is None:
            parsed.rejected.append(
                RejectedFile(path, "bad_followup", f"OBR {number}: no readable result time")
            )
            continue
        reader_id = obr.component(32) or None
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


def _label(observations: list[Segment], mapping: Hl7FollowUpMapping) -> Label | None:
    for obx in observations:
        if obx.field(11).strip() not in FINAL_RESULT_STATUSES:
            continue
        if mapping.observation_id is not None and obx.component(3) != mapping.observation_id:
            continue
        for component in (1, 2):
            label = mapping.label_values.get(obx.component(5, component).casefold())
            if label is not None:
                return label
    return None
