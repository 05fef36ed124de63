"""Ground-truth follow-ups from RIS/pathology exports: CSV rows to :class:`FollowUpRecord`.

A record still carries the study's own identifier (Study Instance UID or accession
number): it never leaves the hospital. :func:`followup_event` turns it into the event
that does, keyed by the same case pseudonym as the prediction of that study. Parsing is
pure: a file gives its records and, for every row it cannot use, a :class:`RejectedFile`
naming the file, the row number and the reason. Missing mapped columns refuse the file.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict

from collectors.dicom_input import RejectedFile
from collectors.events import COLLECTOR_VERSION
from collectors.pseudonym import PseudonymKey, reader_pseudonym
from collectors.settings import CsvFollowUpMapping, StudyIdentifierKind
from postmarket.contracts import FollowUp
from postmarket.contracts.events import Label, ReadRound, TruthSource

MAX_IDENTIFIER_LENGTH = 64
MAX_CSV_ROW_CHARS = 8192
"""A follow-up row holds an identifier, a label, a date and a few codes: far less than this."""


@dataclass(frozen=True)
class FollowUpRecord:
    """One ground-truth statement about one study, before pseudonymisation."""

    identifier_kind: StudyIdentifierKind
    identifier: str
    label: Label
    source: TruthSource
    event_time: datetime
    reader_id: str | None = None
    read_round: ReadRound | None = None
    blinded: bool = True


@dataclass
class ParsedFollowUps:
    """What one follow-up file yielded: usable records and refused rows/messages."""

    records: list[FollowUpRecord] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)


class PseudonymisedFollowUp(BaseModel):
    """A follow-up with its reader already pseudonymised, waiting only for its case.

    This is the form a follow-up named by accession number waits in, until the study that
    carries the accession arrives: nothing in it identifies anyone without the pseudonym key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label
    source: TruthSource
    event_time: AwareDatetime
    reader_pseudonym: str | None = None
    read_round: ReadRound | None = None
    blinded: bool = True

    def identity(self) -> str:
        """What makes two follow-ups of one case the same statement."""
        return "|".join(
            (
                self.source,
                self.reader_pseudonym or "",
                self.read_round or "",
                self.event_time.isoformat(),
                self.label,
            )
        )

    def event(self, case_pseudonym: str, site_id: str, key: PseudonymKey) -> FollowUp:
        """The follow-up event, with a keyed event_id: re-reading an export repeats it."""
        digest = key.digest("followup-event", f"{case_pseudonym}|{self.identity()}")
        return FollowUp(
            event_id=uuid.UUID(bytes=digest[:16], version=4),
            site_id=site_id,
            case_pseudonym=case_pseudonym,
            event_time=self.event_time,
            label=self.label,
            source=self.source,
            reader_pseudonym=self.reader_pseudonym,
            read_round=self.read_round,
            blinded=self.blinded,
            collector_version=COLLECTOR_VERSION,
        )


def pseudonymise_followup(record: FollowUpRecord, key: PseudonymKey) -> PseudonymisedFollowUp:
    return PseudonymisedFollowUp(
        label=record.label,
        source=record.source,
        event_time=record.event_time,
        reader_pseudonym=reader_pseudonym(key, record.reader_id) if record.reader_id else None,
        read_round=record.read_round,
        blinded=record.blinded,
    )


def followup_event(
    record: FollowUpRecord, case_pseudonym: str, site_id: str, key: PseudonymKey
) -> FollowUp:
    """The follow-up event of ``record``, exactly as the collector sends it."""
    return pseudonymise_followup(record, key).event(case_pseudonym, site_id, key)


def timezone_of(name: str) -> ZoneInfo:
    """The zone a mapping names, or a clear error (checked when the collector starts)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


def valid_identifier(value: str) -> str | None:
    """A study identifier as found in an export, or None when it cannot be one."""
    value = value.strip()
    if not value or len(value) > MAX_IDENTIFIER_LENGTH or not value.isprintable():
        return None
    return value


def check_reader_fields(
    source: TruthSource, reader_id: str | None, read_round: ReadRound | None
) -> str | None:
    """Why a record's reader fields are unusable, or None."""
    if source == "reader" and (reader_id is None or read_round is None):
        return "a reader's follow-up needs the reader and the round"
    return None


# --- CSV --------------------------------------------------------------------------------------


def parse_csv_followups(
    path: Path | str, text: str, mapping: CsvFollowUpMapping
) -> ParsedFollowUps:
    """The follow-ups of a CSV export; row numbers count the header as row 1."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns
    required = [
        mapping.identifier_column,
        mapping.label_column,
        mapping.date_column,
        *(c for c in (mapping.source_column, mapping.reader_column, mapping.round_column) if c),
    ]
    missing = [name for name in required if name not in columns]
    if missing:
        raise RejectedFile(
            path,
            "wrong_columns",
            f"missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(found {', '.join(repr(c) for c in columns) or 'no header'})",
        )
    zone = timezone_of(mapping.timezone)
    parsed = ParsedFollowUps()
    try:
        for row_number, row in enumerate(reader, start=2):
            if None in row:  # more cells than header columns: the row is misaligned
                parsed.rejected.append(
                    RejectedFile(path, "bad_followup", f"row {row_number}: more cells than columns")
                )
                continue
            if all(not (value or "").strip() for value in row.values()):
                continue  # blank line
            if sum(len(value or "") for value in row.values()) > MAX_CSV_ROW_CHARS:
                parsed.rejected.append(
                    RejectedFile(
                        path,
                        "bad_followup",
                        f"row {row_number}: longer than {MAX_CSV_ROW_CHARS} characters",
                    )
                )
                continue
            problem, record = _csv_record(row, mapping, zone)
            if record is None:
                parsed.rejected.append(
                    RejectedFile(path, "bad_followup", f"row {row_number}: {problem}")
                )
            else:
                parsed.records.append(record)
    except csv.Error as error:
        raise RejectedFile(path, "wrong_columns", f"not a readable CSV file ({error})") from None
    return parsed


def _csv_record(
    row: Mapping[str, str | None], mapping: CsvFollowUpMapping, zone: ZoneInfo
) -> tuple[str, FollowUpRecord | None]:
    def cell(column: str) -> str:
        return (row.get(column) or "").strip()

    identifier = valid_identifier(cell(mapping.identifier_column))
    if identifier is None:
        return f"{mapping.identifier_column} is empty or not an identifier", None
    label_word = cell(mapping.label_column)
    label = mapping.label_values.get(label_word.casefold())
    if label is None:
        return (
            f"{mapping.label_column} value {label_word!r} is not one of "
            f"{sorted(mapping.label_values)}",
            None,
        )
    date_text = cell(mapping.date_column)
    try:
        when = datetime.strptime(date_text, mapping.date_format)
    except ValueError:
        return (
            f"{mapping.date_column} value {date_text!r} does not match {mapping.date_format!r}",
            None,
        )
    when = when.replace(tzinfo=zone) if when.tzinfo is None else when
    source: TruthSource | None = mapping.source
    if mapping.source_column is not None:
        source_word = cell(mapping.source_column)
        source = mapping.source_values.get(source_word.casefold())
        if source is None:
            return f"{mapping.source_column} value {source_word!r} is not mapped", None
    if source is None:  # the mapping's validator requires source or source_column
        return "no source configured", None
    reader_id = cell(mapping.reader_column) or None if mapping.reader_column else None
    read_round: ReadRound | None = None
    if mapping.round_column is not None and cell(mapping.round_column):
        round_word = cell(mapping.round_column)
        read_round = mapping.round_values.get(round_word.casefold())
        if read_round is None:
            return f"{mapping.round_column} value {round_word!r} is not mapped", None
    problem = check_reader_fields(source, reader_id, read_round)
    if problem is not None:
        return problem, None
    return "", FollowUpRecord(
        identifier_kind=mapping.identifier_kind,
        identifier=identifier,
        label=label,
        source=source,
        event_time=when,
        reader_id=reader_id,
        read_round=read_round,
        blinded=mapping.blinded,
    )
