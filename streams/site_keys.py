"""Every worker's copy of the sites' public signing keys, read from ``pms.sitekeys.v1``.

Each worker reads the whole compacted topic with its own consumer (no group: every worker
needs every key), so verification never depends on which worker owns which partition.
A record signed by a key id this worker has not seen yet may simply be ahead of the
registration: :meth:`SiteKeyFollower.catch_up` then reads the topic up to its current end
before the record is judged, so a key registered before its first event always verifies.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from postmarket import topics
from postmarket.authenticity import SiteKeyring
from postmarket.config import Settings
from postmarket.contracts import ContractViolation, SiteKeyRegistration, decode

logger = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S = 15.0
RETRY_S = 5.0


class SiteKeyFollower:
    """Applies site-key registrations to a :class:`SiteKeyring` as they arrive."""

    def __init__(self, settings: Settings, keyring: SiteKeyring | None = None) -> None:
        self.settings = settings
        self.keyring = keyring or SiteKeyring()
        self._partition = TopicPartition(topics.SITE_KEYS, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._started = asyncio.Event()
        self._applied_offset = 0

    async def run(self) -> None:
        """Follow the topic until cancelled (the worker's lifetime), reconnecting on failure."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Until it is back, records of keys not seen yet are refused (unknown_key).
                logger.exception("following %s failed; retrying", topics.SITE_KEYS)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.worker_id}-site-keys",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.settings.kafka_security().aiokafka_kwargs(),
        )
        await consumer.start()
        try:
            consumer.assign([self._partition])
            await consumer.seek_to_beginning(self._partition)
            self._consumer = consumer
            self._started.set()
            while True:
                batches = await consumer.getmany(self._partition, timeout_ms=500)
                for record in batches.get(self._partition, []):
                    self._apply(record.value, record.offset)
                self._applied_offset = await consumer.position(self._partition)
        finally:
            self._consumer = None
            await consumer.stop()

    def _apply(self, value: bytes | None, offset: int) -> None:
        try:
            registration = decode(SiteKeyRegistration, value or b"")
        except ContractViolation as violation:
            # Only operators write this topic; a bad record is logged, never trusted.
            logger.warning("site key record at offset %d ignored: %s", offset, violation)
            return
        self.keyring.apply(registration)
        logger.info(
            "site key %s of site %s %s",
            registration.key_id,
            registration.site_id,
            "revoked" if registration.revoked_at is not None else "registered",
        )

    async def catch_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> bool:
        """Read the topic up to the end it has now; False if that took over ``timeout_s``."""
        try:
            await asyncio.wait_for(self._started.wait(), timeout_s)
            consumer = self._consumer
            if consumer is None:
                return False
            ends = await asyncio.wait_for(consumer.end_offsets([self._partition]), timeout_s)
            end = ends[self._partition]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while self._applied_offset < end:
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True
