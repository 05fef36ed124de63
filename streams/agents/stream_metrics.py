"""The timers of the site streams the join applies (streams.site_streams): tallies resent
after each assignment, and the streams' gauges."""

from __future__ import annotations

from typing import Any, cast

from streams.app import app
from streams.site_streams import live, owner, send_tally


@app.timer(interval=5.0)
async def resend_tallies() -> None:
    """Once after each (re)assignment, send the tally of every stream this worker owns, from
    its table state (see :meth:`LiveStreams.tallies_to_resend`); a tally the pooled stage
    has is ignored there."""
    recovery = cast(Any, app.tables).recovery  # Faust's TableManager, untyped there
    if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
        return  # a table still recovering holds older states: wait for the latest
    for tally in live.tallies_to_resend(owner()):
        await send_tally(tally)


@app.timer(interval=2.0)
async def publish_changed_streams() -> None:
    """Set the gauges of the streams that changed in the last interval."""
    live.publish_changed()


@app.timer(interval=10.0)
async def refresh_stream_metrics() -> None:
    """After a restart or rebalance, show the streams this worker now owns."""
    live.publish_owned(owner())
