"""The ingress agent: v1 records, keyed by case pseudonym, re-keyed by their site once.

Collectors not yet upgraded send one record per event to ``pms.predictions.v1`` and
``pms.followups.v1``. The join reads every input of a site in one partition (its cases and
its streams are all there), so each v1 record is forwarded as it is, keyed by the site its
event claims, to the join's internal topic (:data:`streams.channels.SITE_INPUTS`). The
join verifies and validates it there as it would have here (streams.rekeying); a record
that claims no site is refused here, for its signature first (it costs no one a second
check: the join never sees it).
"""

from __future__ import annotations

from typing import Any

from streams.app import app, consumed
from streams.authentication import SignedRecord, signer_of
from streams.casefile import RecordPosition
from streams.channels import produce, site_inputs, v1_inputs
from streams.deadletter import dead_lettering_failures
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks
from streams.rekeying import Origin, claimed_site_id, forwarded_headers, site_of

FLUSH_EVENTS = 500
FLUSH_INTERVAL_S = 0.1
unacked = HeldAcks()
"""Records forwarded since the last flush. Faust flushes its producer before it commits an
offset, so a forwarded copy is on its way before its original is committed; a crash in
between forwards it again, and the join counts its event once (by event id)."""


@app.agent(v1_inputs)
async def rekey_by_site(stream: Any) -> None:
    """Forward each v1 record to the join, keyed by its site."""
    await handle_holding_acks(stream, _forward, unacked, flush_forwarded, FLUSH_EVENTS)


async def _forward(event: Any) -> None:
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    consumed(message.topic).inc()

    async def forward() -> None:
        site = claimed_site_id(event.value)
        if site is None:
            # Refused here: unsigned or forged, it is counted unauthentic (as the join
            # would), before anything reads it further.
            value = event.value or b""
            await signer_of(SignedRecord(message.topic, message.key, value, message.headers))
            site = site_of(message.topic, event.value)
        origin = Origin(message.topic, message.partition, message.offset, message.key)
        headers = forwarded_headers(origin, message.headers)
        await produce(site_inputs, site.encode(), event.value, headers=headers)

    await dead_lettering_failures(event, position, forward, "re-keying by site")


@app.task
async def flush_forwarded_periodically() -> None:
    await flush_every(FLUSH_INTERVAL_S, flush_forwarded, "forwarded v1 records")


async def flush_forwarded() -> None:
    """Ack the records forwarded so far (their copies were handed to the producer)."""
    await ack_all(unacked.take())
