"""The worker's full garbage collection: its agents freeze what lives after each record
(streams.gc_tuning), so the cyclic garbage frozen with it is reclaimed here, periodically."""

from __future__ import annotations

import logging

from streams.app import app
from streams.gc_tuning import FULL_COLLECTION_INTERVAL_S, full_collection

logger = logging.getLogger(__name__)


@app.timer(interval=FULL_COLLECTION_INTERVAL_S)
async def collect_frozen_garbage() -> None:
    found, seconds = full_collection()
    logger.info("full garbage collection: %d unreachable objects, %.2f s", found, seconds)
