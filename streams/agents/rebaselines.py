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
from streams.app import app
from streams.channels import rebaselines
from streams.forwarding import forward_to_site
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks

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
    await forward_to_site(event, _stream_site, "re-keying a decision by site")


async def _stream_site(event: Any) -> str:
    # Refused here if invalid: the dead letter names the evidence store's record.
    return decode(Rebaseline, event.value or b"").stream.site_id


@app.task
async def flush_forwarded_periodically() -> None:
    await flush_every(FLUSH_INTERVAL_S, flush_forwarded, "forwarded decisions")


async def flush_forwarded() -> None:
    await ack_all(unacked.take())
