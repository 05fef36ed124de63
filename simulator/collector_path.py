"""Simulated hospitals running the real collector: intake, de-identification, outbox, Kafka.

Each site gets what hospital IT would install: its own pseudonymisation key, its own
event-signing key (registered with the workers before it sends), outbox and case index, and
:class:`~collectors.intake.Intake`, which de-identifies the synthesized DICOM header,
pseudonymises the case, matches the AI output and the follow-ups (named by accession
number, as RIS exports name them) and puts events in the outbox. A
:class:`~collectors.delivery.DeliveryLoop` drains the outbox through a
:class:`~collectors.delivery.RecordSender`: the real kafka-python producer, or a
:class:`RecordFile` that writes what would have been sent (dry runs and tests). The loop
sends as the collector's ``input_contract`` says: v2 signed batches (the default) or v1
records.

Malformed records are not events a collector makes: they stand for bytes a broken sender
writes straight to a v1 input topic. They wait in an outbox of their own and leave, signed
by the site as before, as v1 records whatever the contract, so a worker dead-letters each
with its original bytes (inside a batch they would be re-encoded or break the batch).
A malformed batch (:class:`~simulator.fleet.MalformedBatchRecord`) is the v2 counterpart:
the collector makes its good events as it makes any, puts the bad ones at their places
(:func:`simulator.malformed.assemble_batch`) and the same loop sends it signed by the site.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from collectors.batching import DEFAULT_INPUT_CONTRACT, BatchEntry, InputContract
from collectors.case_index import CaseIndex
from collectors.deidentify import Deidentifier
from collectors.delivery import DeliveryLoop, RecordSender
from collectors.events import AIOutput, dicom_case, prediction_event
from collectors.followups import FollowUpRecord, followup_event
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.producer import Delivery, EncodedEvent, EventProducer
from collectors.pseudonym import PseudonymKey
from postmarket import topics
from postmarket.authenticity import SigningKey
from postmarket.contracts import RegistryEntry, SiteKeyRegistration, encode
from postmarket.kafka_security import KafkaSecurity
from simulator.fleet import (
    MalformedBatchRecord,
    MalformedRecord,
    SimulatedCase,
    SimulatedFollowUp,
    SimulatedRecord,
)
from simulator.headers import accession_number, study_header
from simulator.malformed import assemble_batch
from simulator.scenario import Site

INPUT_TOPICS = {"predictions": topics.PREDICTIONS, "followups": topics.FOLLOWUPS}
EVENT_TOPICS = {"prediction": topics.PREDICTIONS, "followup": topics.FOLLOWUPS}
"""The v1 topic of each kind of event in a v2 batch."""


def pseudonym_key(seed: int, site_id: str) -> PseudonymKey:
    """The simulated site's pseudonymisation key: secret per site, fixed by the seed."""
    return PseudonymKey(hashlib.sha256(f"postmarket-simulator|{seed}|{site_id}".encode()).digest())


def signing_key(seed: int, site_id: str) -> SigningKey:
    """The simulated site's Ed25519 event-signing key: its own, fixed by the seed."""
    return SigningKey.from_seed(
        hashlib.sha256(f"postmarket-simulator-signing|{seed}|{site_id}".encode()).digest()
    )


@dataclass(frozen=True)
class SiteSetup:
    """One site's own secrets and Kafka connection, instead of the ones derived from the seed.

    A secure broker gives each site its own principal, so its collector connects with its
    own ``connect``; tests that look for leaked secrets inject keys they know.
    """

    pseudonym_key: PseudonymKey
    signing_key: SigningKey
    connect: Callable[[], RecordSender]
    metrics: CollectorMetrics | None = None
    """What the collector reports about itself (none by default: nobody scrapes it)."""


def site_key_record(registration: SiteKeyRegistration) -> EncodedEvent:
    """A site's public key as the manufacturer registers it (compacted by site|key id)."""
    return EncodedEvent(topics.SITE_KEYS, registration.as_key().encode(), encode(registration))


def registry_record(entry: RegistryEntry) -> EncodedEvent:
    """A registry entry as the manufacturer publishes it (compacted by device/version)."""
    return EncodedEvent(topics.REGISTRY, entry.as_key().encode(), encode(entry))


def ai_output(case: SimulatedCase) -> AIOutput:
    """The device's result file for ``case``, as its gateway writes it at the site."""
    return AIOutput(
        study_instance_uid=case.study_uid,
        device_id=case.device_id,
        device_version=case.device_version,
        task=case.task,
        score=case.score,
        decision=case.decision,
        operating_threshold=case.operating_threshold,
        event_time=case.event_time,
        study_design=case.study_design,
    )


def followup_record(followup: SimulatedFollowUp) -> FollowUpRecord:
    """One row of the RIS/pathology export, naming its study by accession number."""
    return FollowUpRecord(
        identifier_kind="accession_number",
        identifier=accession_number(followup.study_uid),
        label=followup.label,
        source=followup.source,
        event_time=followup.event_time,
        reader_id=followup.reader_id,
        read_round=followup.read_round,
        blinded=True,
    )


class SiteCollector:
    """One hospital's collector, with its own key, outbox and case index under ``home``."""

    def __init__(
        self,
        site: Site,
        seed: int,
        home: Path,
        connect: Callable[[], RecordSender],
        setup: SiteSetup | None = None,
        input_contract: InputContract = DEFAULT_INPUT_CONTRACT,
    ) -> None:
        self.site = site
        setup = setup or SiteSetup(
            pseudonym_key(seed, site.id), signing_key(seed, site.id), connect
        )
        self.outbox = Outbox(home / site.id / "outbox.db", metrics=setup.metrics)
        self.cases = CaseIndex(home / site.id / "cases.db")
        self.intake = Intake(
            site.id, setup.pseudonym_key, self.outbox, self.cases, metrics=setup.metrics
        )
        self.delivery = DeliveryLoop(
            self.outbox,
            setup.connect,
            setup.metrics,
            signer=setup.signing_key,
            input_contract=input_contract,
            site_id=site.id,
        )
        self.pseudonym_key = setup.pseudonym_key
        self.injected = Outbox(home / site.id / "injected.db")
        """Malformed records and batches, sent as they are by a loop of their own."""
        self.injected_delivery = DeliveryLoop(
            self.injected, setup.connect, signer=setup.signing_key, input_contract="v1"
        )
        self._files = 0

    def accept(self, record: SimulatedRecord) -> None:
        """Hand one simulated input to the collector, the way its source would."""
        if isinstance(record, SimulatedCase):
            self._files += 1
            header = study_header(record, self.site.institution, self.site.city)
            self.intake.accept_dicom(f"simulated://{self.site.id}/{self._files}.dcm", header)
            self.intake.accept_ai_output(ai_output(record))
        elif isinstance(record, SimulatedFollowUp):
            self.intake.accept_followup(followup_record(record))
        elif isinstance(record, MalformedBatchRecord):
            self.put_malformed_batch(record)
        else:
            self.put_malformed(record)

    def put_malformed(self, record: MalformedRecord) -> None:
        """Queue invalid bytes as they are: no contract sees them before the workers."""
        event_id = f"malformed|{record.injection}|{record.key.decode()}"
        self.injected.put_encoded(
            event_id, EncodedEvent(INPUT_TOPICS[record.topic], record.key, record.value)
        )

    def put_malformed_batch(self, record: MalformedBatchRecord) -> None:
        """Queue a batch of this site's good events with the bad ones at their places."""
        value = assemble_batch(self.site.id, batch_good_events(record, self), record.bad)
        self.injected.put_encoded(
            f"malformed-batch|{record.name}",
            EncodedEvent(topics.INPUTS, self.site.id.encode(), value),
        )

    def deliver(self) -> int:
        """Send everything queued, retrying until the broker acknowledged it; returns how
        many events (and malformed records) were sent."""
        return self.delivery.drain() + self.injected_delivery.drain()

    def close(self) -> None:
        self.delivery.close()
        self.injected_delivery.close()
        self.cases.close()
        self.outbox.close()
        self.injected.close()


def batch_good_events(record: MalformedBatchRecord, collector: SiteCollector) -> list[BatchEntry]:
    """Each case of ``record`` and its follow-up, in that order, as the site's collector
    makes them (de-identified, pseudonymised with its key, keyed event ids)."""
    key, site = collector.pseudonym_key, collector.site
    deidentifier = Deidentifier(key)
    entries: list[BatchEntry] = []
    for case, followup in zip(record.cases, record.followups, strict=True):
        header = study_header(case, site.institution, site.city)
        study = dicom_case(f"simulated://{site.id}/{record.name}", header, deidentifier)
        prediction = prediction_event(study, ai_output(case), site.id, key)
        truth = followup_event(followup_record(followup), study.case_pseudonym, site.id, key)
        entries.append(("prediction", str(prediction.event_id), encode(prediction)))
        entries.append(("followup", str(truth.event_id), encode(truth)))
    return entries


class RecordFile:
    """A :class:`RecordSender` that appends each record as a JSON line instead of sending.

    Values that are UTF-8 are written as text, others as base64, so a file is readable
    and still byte-exact; offsets count lines, so reruns can be compared line by line.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._stream: IO[str] = path.open("w", encoding="utf-8")
        self._offset = 0

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        deliveries = []
        for record in records:
            self._stream.write(json.dumps(_as_line(record), sort_keys=True) + "\n")
            deliveries.append(Delivery(record.topic, 0, self._offset))
            self._offset += 1
        self._stream.flush()
        return deliveries

    def close(self) -> None:
        """Kept open across delivery loops; :meth:`finish` closes the file."""

    def finish(self) -> None:
        self._stream.close()

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()


def _as_line(record: EncodedEvent) -> dict[str, Any]:
    line: dict[str, Any] = {
        "topic": record.topic,
        "key": record.key.decode("utf-8", "backslashreplace"),
    }
    try:
        line["value"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_base64"] = base64.b64encode(record.value).decode()
    if record.headers:
        line["headers_base64"] = [
            [name, base64.b64encode(content).decode()] for name, content in record.headers
        ]
    return line


def read_record_file(path: Path) -> list[EncodedEvent]:
    """The records a :class:`RecordFile` wrote, as they would have gone to Kafka."""
    records = []
    for text in path.read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        value = (
            line["value"].encode() if "value" in line else base64.b64decode(line["value_base64"])
        )
        headers = tuple(
            (name, base64.b64decode(content)) for name, content in line.get("headers_base64", [])
        )
        records.append(EncodedEvent(line["topic"], line["key"].encode(), value, headers))
    return records


def sent_events(records: Sequence[EncodedEvent]) -> list[EncodedEvent]:
    """Each event in ``records`` as the v1 record it would be (topic of its kind, keyed by
    its case pseudonym, its own JSON), v2 batches opened; other records as they are.

    For reading what a simulation sent whatever its input contract (tests, the record file).
    """
    events = []
    for record in records:
        if record.topic != topics.INPUTS:
            events.append(record)
            continue
        for entry in json.loads(record.value)["events"]:
            event = entry["event"]
            topic = EVENT_TOPICS[entry["kind"]]
            value = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
            events.append(EncodedEvent(topic, str(event["case_pseudonym"]).encode(), value))
    return events


def kafka_connector(
    bootstrap: str, security: KafkaSecurity | None = None
) -> Callable[[], RecordSender]:
    """Connect to the central Kafka with the collectors' own producer (acks=all, idempotent),
    as the principal ``security`` names on a secure broker."""

    def connect() -> RecordSender:
        return EventProducer(bootstrap, client_id="postmarket-simulator", security=security)

    return connect


def broker_reachable(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether any bootstrap address accepts a TCP connection (fails fast, unlike a send)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False
