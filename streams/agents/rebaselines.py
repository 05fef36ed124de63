"""The re-baselining agent: the evidence store's decisions, keyed by stream, forwarded once
to the join keyed by their stream's site.

A stream's state lives on its site's partition, applied by the join (streams.site_streams),
so a decision (``pms.rebaselines.v1``) goes where the stream's predictions are, as the
ingress agent forwards v1 records: value and headers as they are, with the origin header
(streams.rekeying). The join applies it at the original record's position, the one a
worker of the previous release applied it at, so a decision applied then is recognised.
"""

from __future__ import annotations

from typing import Any

from postmarket.contracts import Rebaseline, decode
from streams.app import app, consumed
from streams.casefile import RecordPosition
from streams.channels import produce, rebaselines, site_inputs
from streams.deadletter import dead_lettering_failures
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks
from streams.rekeying import Origin, forwarded_headers

FLUSH_EVENTS = 100
FLUSH_INTERVAL_S = 0.1
unacked = HeldAcks()
"""Decisions forwarded since the last flush (acked once their copies were handed to the
producer, which Faust flushes before it commits; a copy sent twice is applied once)."""


@app.agent(rebaselines)
async def forward_rebaselines(stream: Any) -> None:
    """Forward each decision to the join, keyed by its stream's site."""
    await handle_holding_acks(stream, _forward, unacked, flush_forwarded, FLUSH_EVENTS)


async def _forward(event: Any) -> None:
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    consumed(message.topic).inc()

    async def forward() -> None:
        # Refused here if invalid: the dead letter names the evidence store's record.
        decision = decode(Rebaseline, event.value or b"")
        origin = Origin(message.topic, message.partition, message.offset, message.key)
        headers = forwarded_headers(origin, message.headers)
        site = decision.stream.site_id.encode()
        await produce(site_inputs, site, event.value, headers=headers)

    await dead_lettering_failures(event, position, forward, "re-keying a decision by site")


@app.task
async def flush_forwarded_periodically() -> None:
    await flush_every(FLUSH_INTERVAL_S, flush_forwarded, "forwarded decisions")


async def flush_forwarded() -> None:
    await ack_all(unacked.take())
