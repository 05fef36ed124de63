"""The collector's local memory of cases: what arrived and what waits for its study.

A prediction needs the AI output *and* a DICOM header of its study (for the acquisition
features); a follow-up named by accession number needs the study that carries that
accession. Whichever arrives first waits here, in SQLite (WAL, ``synchronous=FULL``),
until the other comes, across restarts. Only keyed pseudonyms are stored: no UID, no
accession number, nothing a reader without the pseudonym key could link back to a patient.

An input whose study never comes (sent to another hospital, a modality the collector
does not see) would wait for ever: :meth:`CaseIndex.expire_waiting` drops what waited
longer than the collector's ``waiting_expiry_days``, and the collector counts it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType

from postmarket.contracts import AcquisitionFeatures

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    case_pseudonym TEXT PRIMARY KEY,
    acquisition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accessions (
    accession_link TEXT PRIMARY KEY,
    case_pseudonym TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waiting_outputs (
    case_pseudonym TEXT NOT NULL,
    output_id TEXT NOT NULL,
    output TEXT NOT NULL,
    waiting_since REAL,
    PRIMARY KEY (case_pseudonym, output_id)
);
CREATE TABLE IF NOT EXISTS waiting_followups (
    accession_link TEXT NOT NULL,
    followup_id TEXT NOT NULL,
    followup TEXT NOT NULL,
    waiting_since REAL,
    PRIMARY KEY (accession_link, followup_id)
);
"""


WAITING_TABLES = {"ai_output": "waiting_outputs", "followup": "waiting_followups"}
"""Kind of waiting input (the ``kind`` label of the collector's metrics) -> its table. The
queries name these constants (hence the ``noqa: S608``), never anything from input."""


class CaseIndex:
    """Studies seen, accession links, and inputs waiting for their study."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._start_waiting_clocks(time.time())

    def _start_waiting_clocks(self, now: float) -> None:
        """Give inputs stored before waits were timed (no ``waiting_since``) a start: now."""
        for table in WAITING_TABLES.values():
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if "waiting_since" not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN waiting_since REAL")
            self._db.execute(
                f"UPDATE {table} SET waiting_since = ? WHERE waiting_since IS NULL",  # noqa: S608
                (now,),
            )

    # --- studies ------------------------------------------------------------------------------

    def record_study(
        self, case_pseudonym: str, acquisition: AcquisitionFeatures, accession_link: str | None
    ) -> bool:
        """Remember a study (the first header of a study wins); True if it is new."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO studies (case_pseudonym, acquisition) VALUES (?, ?)",
                (case_pseudonym, acquisition.model_dump_json()),
            )
            if accession_link is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO accessions VALUES (?, ?)",
                    (accession_link, case_pseudonym),
                )
            return cursor.rowcount == 1

    def acquisition(self, case_pseudonym: str) -> AcquisitionFeatures | None:
        """The acquisition features of a study seen before, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT acquisition FROM studies WHERE case_pseudonym = ?", (case_pseudonym,)
            ).fetchone()
        return None if row is None else AcquisitionFeatures.model_validate_json(row[0])

    def case_of_accession(self, accession_link: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT case_pseudonym FROM accessions WHERE accession_link = ?",
                (accession_link,),
            ).fetchone()
        return None if row is None else str(row[0])

    # --- waiting inputs -----------------------------------------------------------------------

    def wait_output(
        self, case_pseudonym: str, output_id: str, output_json: str, now: float | None = None
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO waiting_outputs VALUES (?, ?, ?, ?)",
                (case_pseudonym, output_id, output_json, time.time() if now is None else now),
            )

    def waiting_outputs(self, case_pseudonym: str) -> list[tuple[str, str]]:
        """(output_id, output JSON) of AI outputs waiting for this study."""
        with self._lock:
            rows = self._db.execute(
                "SELECT output_id, output FROM waiting_outputs WHERE case_pseudonym = ?",
                (case_pseudonym,),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def release_output(self, case_pseudonym: str, output_id: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM waiting_outputs WHERE case_pseudonym = ? AND output_id = ?",
                (case_pseudonym, output_id),
            )

    def wait_followup(
        self, accession_link: str, followup_id: str, followup_json: str, now: float | None = None
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO waiting_followups VALUES (?, ?, ?, ?)",
                (accession_link, followup_id, followup_json, time.time() if now is None else now),
            )

    def waiting_followups(self, accession_link: str) -> list[tuple[str, str]]:
        """(followup_id, follow-up JSON) of follow-ups waiting for this accession."""
        with self._lock:
            rows = self._db.execute(
                "SELECT followup_id, followup FROM waiting_followups WHERE accession_link = ?",
                (accession_link,),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def release_followup(self, accession_link: str, followup_id: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM waiting_followups WHERE accession_link = ? AND followup_id = ?",
                (accession_link, followup_id),
            )

    def waiting_counts(self) -> dict[str, int]:
        """How many AI outputs and follow-ups wait for their study."""
        counts = {}
        with self._lock:
            for kind, table in WAITING_TABLES.items():
                query = f"SELECT COUNT(*) FROM {table}"  # noqa: S608
                counts[kind] = int(self._db.execute(query).fetchone()[0])
        return counts

    def expire_waiting(self, waited_since: float) -> dict[str, int]:
        """Drop the AI outputs and follow-ups waiting since before ``waited_since`` (Unix
        time); how many of each kind."""
        with self._lock:
            return {
                kind: self._db.execute(
                    f"DELETE FROM {table} WHERE waiting_since < ?",  # noqa: S608
                    (waited_since,),
                ).rowcount
                for kind, table in WAITING_TABLES.items()
            }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CaseIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
