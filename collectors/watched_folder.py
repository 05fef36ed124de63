"""The watched folder: every file dropped in the inbox is read once, then moved out.

What a file is, is decided by its content, not by who dropped it: ``MSH`` opens an HL7
v2 message, a JSON object with ``resourceType`` is FHIR, any other JSON object an AI
device output, ``.csv`` a follow-up export, anything else is read as DICOM (headers
only; a DICOM SR is an AI result, read through ``[collector.ai_sr]``). The C-STORE SCP
writes what it receives here too, so both take the same path.

A file is read once it has not changed for ``settle_seconds`` (a copy may still be under
way) and never twice: it is moved to the processed folder (or deleted) after its events
are in the outbox, or to the rejected folder with a ``.reason.txt`` naming the reason.
A bad file is counted by reason and never stops the scan; only a full outbox pauses it,
leaving the files where they are.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from collectors.dicom_input import RejectedFile, read_header
from collectors.events import AIOutput, read_ai_output
from collectors.fhir_followups import parse_fhir_followups
from collectors.followups import ParsedFollowUps, parse_csv_followups
from collectors.hl7_followups import parse_hl7_followups
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import OutboxFull
from collectors.settings import AiSrMapping, FollowUpMappings, InboxSettings
from collectors.sr_ai_output import ai_output_from_sr, is_structured_report

log = logging.getLogger(__name__)

InputKind = Literal["dicom", "ai_output", "csv", "fhir", "hl7"]
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload")
SNIFF_BYTES = 4096


def input_kind(path: Path, head: bytes) -> InputKind:
    """What a file in the inbox is, from its first bytes (and ``.csv`` by name)."""
    text = head.lstrip(b"\xef\xbb\xbf\x0b \t\r\n")
    if text.startswith(b"MSH"):
        return "hl7"
    if text.startswith(b"{"):
        return "fhir" if b'"resourceType"' in head else "ai_output"
    if path.suffix.lower() == ".csv":
        return "csv"
    return "dicom"


@dataclass(frozen=True)
class InboxInput:
    """One inbox file, decoded exactly as the collector will use it (nothing queued yet).

    ``header`` is set for a DICOM image, ``ai_output`` for an AI result (JSON or DICOM SR),
    ``followups`` for a CSV, HL7 or FHIR follow-up file (with the rows it refused).
    """

    path: Path
    kind: InputKind
    header: Dataset | None = None
    ai_output: AIOutput | None = None
    followups: ParsedFollowUps | None = None


def read_input(
    path: Path,
    limits: InboxSettings,
    mappings: FollowUpMappings,
    ai_sr: AiSrMapping | None,
) -> InboxInput:
    """Decode one inbox file: sniff its kind, refuse it above its limit, parse it.

    The running collector and ``postmarket collector check`` both call this, so a file
    ``check`` passes is one ``run`` accepts. Raises :class:`RejectedFile`.
    """
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
            size = os.fstat(stream.fileno()).st_size
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    kind = input_kind(path, head)
    check_size(path, kind, size, limits)
    if kind == "dicom":
        header = read_header(path)
        if not is_structured_report(header):
            return InboxInput(path, kind, header=header)
        if ai_sr is None:  # the AI result, not an image of the study
            raise RejectedFile(
                path, "bad_ai_output", "a DICOM SR, and [collector.ai_sr] is not set"
            )
        return InboxInput(path, kind, ai_output=ai_output_from_sr(path, header, ai_sr))
    if kind == "ai_output":
        return InboxInput(path, kind, ai_output=read_ai_output(path))
    parsed = parse_followups(path, kind, mappings)
    if not parsed.records and parsed.rejected:
        if len(parsed.rejected) == 1:
            raise parsed.rejected[0]
        raise RejectedFile(
            path,
            "bad_followup",
            f"no usable follow-up; {len(parsed.rejected)} refused: "
            + "; ".join(r.detail for r in parsed.rejected[:5]),
        )
    return InboxInput(path, kind, followups=parsed)


def check_size(path: Path, kind: InputKind, size: int, limits: InboxSettings) -> None:
    """Refuse a file above its kind's limit before anything parses it."""
    setting, limit = {
        "dicom": ("max_dicom_bytes", limits.max_dicom_bytes),
        "ai_output": ("max_ai_output_bytes", limits.max_ai_output_bytes),
    }.get(kind, ("max_followup_bytes", limits.max_followup_bytes))
    if size > limit:
        raise RejectedFile(
            path,
            "too_large",
            f"{size} bytes is more than the {limit} bytes a {kind} file may have "
            f"([collector.inbox] {setting})",
        )


def parse_followups(path: Path, kind: InputKind, mappings: FollowUpMappings) -> ParsedFollowUps:
    """The records of a CSV, HL7 or FHIR follow-up file, through its configured mapping."""
    if kind == "csv":
        if mappings.csv is None:
            raise RejectedFile(path, "bad_followup", "no [collector.followups.csv] mapping")
        text = _read_text(path, mappings.csv.encoding)
        return parse_csv_followups(path, text, mappings.csv)
    text = _read_text(path)
    if kind == "hl7":
        if mappings.hl7 is None:
            raise RejectedFile(path, "bad_followup", "no [collector.followups.hl7] mapping")
        return parse_hl7_followups(path, text, mappings.hl7)
    if mappings.fhir is None:
        raise RejectedFile(path, "bad_followup", "no [collector.followups.fhir] mapping")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise RejectedFile(path, "bad_followup", f"not valid JSON ({error})") from None
    return parse_fhir_followups(path, document, mappings.fhir)


class WatchedFolder:
    """Polls one inbox folder and hands each settled file to the :class:`Intake`."""

    def __init__(
        self,
        settings: InboxSettings,
        intake: Intake,
        mappings: FollowUpMappings | None = None,
        metrics: CollectorMetrics | None = None,
        ai_sr: AiSrMapping | None = None,
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.mappings = mappings or FollowUpMappings()
        self.ai_sr = ai_sr
        self._metrics = metrics
        for folder in (settings.path, settings.processed_dir, settings.rejected_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def run(self, stop: threading.Event) -> None:
        """Scan every ``poll_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.scan_once()
            except Exception:  # a bug must not end the collector; the file stays for a retry
                log.exception("inbox scan failed; retrying")
            stop.wait(self.settings.poll_seconds)

    def scan_once(self, now: float | None = None) -> int:
        """Handle every settled file in the inbox; returns how many were handled."""
        handled = 0
        for path in self._settled_files(time.time() if now is None else now):
            try:
                self.handle(path)
            except OutboxFull as full:
                log.warning("%s; %s stays in the inbox until there is room", full, path.name)
                break
            except Exception as error:  # one file must never stop the queue behind it
                log.exception("could not process %s", path)
                self._reject(
                    path,
                    RejectedFile(
                        path,
                        "unreadable",
                        f"could not be processed ({type(error).__name__}); see the collector log",
                    ),
                )
            handled += 1
        return handled

    def handle(self, path: Path) -> None:
        """Read one file, queue its events, and move it out of the inbox."""
        try:
            decoded = read_input(path, self.settings, self.mappings, self.ai_sr)
            row_problems = self._accept(decoded)
        except RejectedFile as rejected:
            self._reject(path, rejected)
            return
        if self._metrics is not None:
            self._metrics.inputs_accepted.labels(kind=decoded.kind).inc()
        for problem in row_problems:
            self._count(problem)
            log.warning("rejected %s", problem)
        if row_problems:
            self._write_reasons(self.settings.rejected_dir / path.name, row_problems)
        self._done(path)

    def _accept(self, decoded: InboxInput) -> list[RejectedFile]:
        """Queue what the file holds; return the rows or messages refused inside it."""
        if decoded.header is not None:
            self.intake.accept_dicom(decoded.path, decoded.header)
            return []
        if decoded.ai_output is not None:
            self.intake.accept_ai_output(decoded.ai_output)
            return []
        parsed = decoded.followups or ParsedFollowUps()
        for record in parsed.records:
            self.intake.accept_followup(record)
        return parsed.rejected

    # --- moving files out ---------------------------------------------------------------------

    def _settled_files(self, now: float) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(self.settings.path), key=lambda e: e.name)
        except OSError as error:
            log.warning("cannot list inbox %s: %s", self.settings.path, error.strerror)
            return
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                changed = entry.stat().st_mtime
            except OSError:
                continue  # gone meanwhile
            if now - changed >= self.settings.settle_seconds:
                yield Path(entry.path)

    def _reject(self, path: Path, rejected: RejectedFile) -> None:
        self._count(rejected)
        log.warning("rejected %s", rejected)
        target = _free_name(self.settings.rejected_dir / path.name)
        try:
            os.replace(path, target)
        except OSError as error:
            log.error("cannot move %s out of the inbox: %s", path, error.strerror)
            return
        self._write_reasons(target, [rejected])

    def _done(self, path: Path) -> None:
        try:
            if self.settings.processed_action == "delete":
                path.unlink()
            else:
                os.replace(path, _free_name(self.settings.processed_dir / path.name))
        except OSError as error:
            log.error("cannot move %s out of the inbox: %s", path, error.strerror)

    def _count(self, rejected: RejectedFile) -> None:
        if self._metrics is not None:
            self._metrics.files_rejected.labels(reason=rejected.reason).inc()

    @staticmethod
    def _write_reasons(target: Path, problems: list[RejectedFile]) -> None:
        lines = "".join(f"{problem.reason}: {problem}\n" for problem in problems)
        reasons = _free_name(target.with_name(target.name + ".reason.txt"))
        try:
            reasons.write_text(lines)
        except OSError as error:
            log.error("cannot write %s: %s", reasons, error.strerror)


def _read_text(path: Path, encoding: str = "utf-8-sig") -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RejectedFile(path, "unreadable", error.strerror or type(error).__name__) from None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise RejectedFile(path, "bad_followup", f"not {encoding} text ({error})") from None


def _free_name(target: Path) -> Path:
    """``target``, or ``target`` with a counter when a file of that name is already there."""
    if not target.exists():
        return target
    for number in range(1, 1_000_000):
        candidate = target.with_name(f"{target.stem}.{number}{target.suffix}")
        if not candidate.exists():
            return candidate
    raise OSError(f"no free name for {target}")
