"""Forwarding a record to the join, keyed by its site: what the ingress agent does with v1
records and the re-baselining agent with decisions.

The value and headers go as they are, with the origin header (streams.rekeying), to the
join's internal topic (:data:`streams.channels.SITE_INPUTS`), so the join verifies and
applies the record at its original position. A record whose site cannot be read is
dead-lettered as it was read. The caller holds the record until its flush acks it: Faust
flushes the producer before it commits an offset, so the copy is on its way first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from streams.app import consumed
from streams.casefile import RecordPosition
from streams.channels import produce, site_inputs
from streams.deadletter import dead_lettering_failures
from streams.rekeying import Origin, forwarded_headers

SiteOf = Callable[[Any], Awaitable[str]]
"""The site a record belongs to (raises, naming why, if it cannot be read)."""


async def forward_to_site(event: Any, site_of: SiteOf, doing: str) -> None:
    """Forward one record to the join keyed by ``site_of(event)``; dead-letter it if that
    fails (``doing`` names what failed)."""
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    consumed(message.topic).inc()

    async def forward() -> None:
        site = await site_of(event)
        origin = Origin(message.topic, message.partition, message.offset, message.key)
        headers = forwarded_headers(origin, message.headers)
        await produce(site_inputs, site.encode(), event.value, headers=headers)

    await dead_lettering_failures(event, position, forward, doing)
