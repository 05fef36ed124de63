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

from streams.app import app
from streams.authentication import SignedRecord, signer_of
from streams.channels import v1_inputs
from streams.forwarding import forward_to_site
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks
from streams.rekeying import claimed_site_id, site_of

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
    await forward_to_site(event, _site_claimed, "re-keying by site")


async def _site_claimed(event: Any) -> str:
    site = claimed_site_id(event.value)
    if site is None:
        # Refused here: unsigned or forged, it is counted unauthentic (as the join would),
        # before anything reads it further.
        message = event.message
        value = event.value or b""
        await signer_of(SignedRecord(message.topic, message.key, value, message.headers))
        site = site_of(message.topic, event.value)
    return site


@app.task
async def flush_forwarded_periodically() -> None:
    await flush_every(FLUSH_INTERVAL_S, flush_forwarded, "forwarded v1 records")


async def flush_forwarded() -> None:
    """Ack the records forwarded so far (their copies were handed to the producer)."""
    await ack_all(unacked.take())
