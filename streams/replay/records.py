"""How a replay's events become records, as a collector's ``input_contract`` says.

v2: full signed batches of one site on ``pms.inputs.v2`` (one open batch per site of the
file, bounded by ``MAX_BATCH_EVENTS`` and ``MAX_BATCH_BYTES``); v1: one record per event
on the kind's topic, keyed by its case pseudonym.
"""

from __future__ import annotations

from typing import Literal, Protocol

from postmarket import topics
from postmarket.contracts import FollowUp, Prediction
from postmarket.contracts.batches import MAX_BATCH_BYTES, EventKind, batch_overheads, encode_batch
from postmarket.contracts.events import MAX_BATCH_EVENTS
from streams.replay.mapping import Kind
from streams.replay.sinks import EventSink

TOPICS: dict[Kind, str] = {"predictions": topics.PREDICTIONS, "followups": topics.FOLLOWUPS}
BATCH_KINDS: dict[Kind, EventKind] = {"predictions": "prediction", "followups": "followup"}
InputContract = Literal["v1", "v2"]
"""As a collector's ``input_contract``: v2 signed batches by site, or v1 one record per event."""
INPUT_CONTRACTS: tuple[InputContract, ...] = ("v1", "v2")


class EventWriter(Protocol):
    """Turns a replay's events into records on an :class:`EventSink`, as its contract says."""

    topic: str

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None: ...

    def finish(self) -> int:
        """Send what is still open and wait; return how many events were not acknowledged."""


class SingleRecords:
    """v1: each event its own record on its kind's topic, keyed by its case pseudonym."""

    def __init__(self, sink: EventSink, kind: Kind) -> None:
        self.sink = sink
        self.topic = TOPICS[kind]

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None:
        self.sink.send(TOPICS[kind], event.case_pseudonym.encode(), raw)

    def finish(self) -> int:
        return self.sink.finish()


class SiteBatches:
    """v2: one open batch per site, sent to ``pms.inputs.v2`` keyed by its site as soon as
    it is full (``max_events`` events, or no room for the next event within ``max_bytes``),
    and the rest at :meth:`finish`. A rerun of the same file makes the same batches."""

    topic = topics.INPUTS

    def __init__(
        self,
        sink: EventSink,
        max_events: int = MAX_BATCH_EVENTS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if not 1 <= max_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_EVENTS} events, not {max_events}")
        self.sink = sink
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._open: dict[str, list[tuple[EventKind, str, bytes]]] = {}
        self._bytes: dict[str, int] = {}
        self.records = 0

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None:
        site = event.site_id
        entry = (BATCH_KINDS[kind], str(event.event_id), raw)
        first, further = batch_overheads(site)
        content = len(entry[0]) + len(raw)
        if first + content > self.max_bytes:
            # Contracts bound an event far below a batch; only a tiny max_bytes gets here.
            raise ValueError(f"event {entry[1]} alone exceeds the {self.max_bytes}-byte bound")
        batch = self._open.get(site)
        if batch is not None and (
            len(batch) == self.max_events or self._bytes[site] + further + content > self.max_bytes
        ):
            self._send(site)
            batch = None
        if batch is None:
            self._open[site] = [entry]
            self._bytes[site] = first + content
        else:
            batch.append(entry)
            self._bytes[site] += further + content

    def _send(self, site: str) -> None:
        batch = self._open.pop(site)
        del self._bytes[site]
        self.sink.send(self.topic, site.encode(), encode_batch(site, batch), len(batch))
        self.records += 1

    def finish(self) -> int:
        for site in list(self._open):
            self._send(site)
        return self.sink.finish()


def event_writer(sink: EventSink, kind: Kind, input_contract: InputContract) -> EventWriter:
    """How a replay's events become records: v2 batches by site, or v1 single records."""
    if input_contract == "v1":
        return SingleRecords(sink, kind)
    return SiteBatches(sink)
