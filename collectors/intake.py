"""Where every source delivers: a decoded input becomes events in the outbox.

Sources (the watched folder, the C-STORE SCP via the folder) only decode files and call
:class:`Intake`. It de-identifies DICOM headers, matches AI outputs and follow-ups to
their study through the :class:`~collectors.case_index.CaseIndex`, builds events with
the pure functions of :mod:`collectors.events` and :mod:`collectors.followups`, and puts
them in the outbox. Every event id is keyed and stable, so an input handled twice (a
crash between outbox and file move, a PACS resend) produces the same event, which the
outbox or the workers drop.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom.dataset import Dataset

from collectors.case_index import CaseIndex
from collectors.deidentify import Deidentifier
from collectors.events import AIOutput, DicomCase, dicom_case, prediction_event
from collectors.followups import FollowUpRecord, PseudonymisedFollowUp, pseudonymise_followup
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey, case_pseudonym
from postmarket.contracts import Contract, FollowUp, Prediction

_WITHHELD_UID = "withheld"
"""Stands in for the Study Instance UID of a waiting AI output: the UID is not stored."""


def accession_link(key: PseudonymKey, accession_number: str) -> str:
    """The keyed link of an accession number to its study (stored instead of the number)."""
    return key.pseudonym("accession-link", accession_number.strip())


class Intake:
    """Turns decoded inputs into outbox events, matching each to its study."""

    def __init__(
        self,
        site_id: str,
        key: PseudonymKey,
        outbox: Outbox,
        cases: CaseIndex,
        metrics: CollectorMetrics | None = None,
        deidentifier: Deidentifier | None = None,
    ) -> None:
        self.site_id = site_id
        self.outbox = outbox
        self.cases = cases
        self._key = key
        self._metrics = metrics
        self._deidentifier = deidentifier or Deidentifier(key)
        self._lock = threading.Lock()
        self._publish_waiting()

    # --- DICOM --------------------------------------------------------------------------------

    def accept_dicom(self, path: Path | str, header: Dataset) -> DicomCase:
        """De-identify a header (in place), remember its study, release what waited for it."""
        accession = str(header.get("AccessionNumber", "") or "").strip()
        case = dicom_case(path, header, self._deidentifier)  # raises RejectedFile
        link = accession_link(self._key, accession) if accession else None
        with self._lock:
            self.cases.record_study(case.case_pseudonym, case.acquisition, link)
            for output_id, output_json in self.cases.waiting_outputs(case.case_pseudonym):
                output = AIOutput.model_validate_json(output_json)
                self._put(prediction_event(case, output, self.site_id, self._key))
                self.cases.release_output(case.case_pseudonym, output_id)
            if link is not None:
                for followup_id, followup_json in self.cases.waiting_followups(link):
                    pending = PseudonymisedFollowUp.model_validate_json(followup_json)
                    self._put(pending.event(case.case_pseudonym, self.site_id, self._key))
                    self.cases.release_followup(link, followup_id)
            self._publish_waiting()
        if self._metrics is not None and case.burned_in_annotation:
            self._metrics.burned_in_annotation.inc()
        return case

    # --- AI outputs ---------------------------------------------------------------------------

    def accept_ai_output(self, output: AIOutput) -> Prediction | None:
        """Queue the prediction now if its study was seen, else keep it until it is."""
        pseudonym = case_pseudonym(self._key, output.study_instance_uid)
        with self._lock:
            acquisition = self.cases.acquisition(pseudonym)
            if acquisition is not None:
                case = DicomCase(pseudonym, acquisition, burned_in_annotation=None)
                event = prediction_event(case, output, self.site_id, self._key)
                self._put(event)
                return event
            withheld = output.model_copy(update={"study_instance_uid": _WITHHELD_UID})
            output_id = "|".join((output.device_id, output.device_version, output.task))
            self.cases.wait_output(pseudonym, output_id, withheld.model_dump_json())
            self._publish_waiting()
            return None

    # --- follow-ups ---------------------------------------------------------------------------

    def accept_followup(self, record: FollowUpRecord) -> FollowUp | None:
        """Queue the follow-up keyed by its case, or keep it until its accession is seen."""
        pending = pseudonymise_followup(record, self._key)
        with self._lock:
            if record.identifier_kind == "study_instance_uid":
                pseudonym = case_pseudonym(self._key, record.identifier)
                event = pending.event(pseudonym, self.site_id, self._key)
                self._put(event)
                return event
            link = accession_link(self._key, record.identifier)
            known = self.cases.case_of_accession(link)
            if known is None:
                self.cases.wait_followup(link, pending.identity(), pending.model_dump_json())
                self._publish_waiting()
                return None
            event = pending.event(known, self.site_id, self._key)
            self._put(event)
            return event

    # --- bookkeeping --------------------------------------------------------------------------

    def expire_waiting(self, waited_since: float) -> dict[str, int]:
        """Drop what waited for its study since before ``waited_since`` (Unix time) and count
        it; how many of each kind. Nothing is logged of them but the counts (no PHI)."""
        with self._lock:
            expired = self.cases.expire_waiting(waited_since)
            self._publish_waiting()
        if self._metrics is not None:
            for kind, count in expired.items():
                self._metrics.waiting_expired.labels(kind=kind).inc(count)
        return expired

    def _put(self, event: Contract) -> None:
        stored = self.outbox.put(event)
        if stored and self._metrics is not None:
            kind = "prediction" if isinstance(event, Prediction) else "followup"
            self._metrics.events_queued.labels(event=kind).inc()

    def _publish_waiting(self) -> None:
        if self._metrics is None:
            return
        for kind, count in self.cases.waiting_counts().items():
            self._metrics.cases_waiting.labels(kind=kind).set(count)
