"""A case record's authenticity, in one call: its signature verified before anything reads
the event, then the event decoded, then its site checked against the signing key's.

A record that is not provably from a registered, unrevoked key of the site it claims is
refused as a :class:`ContractViolation` with reason ``authenticity`` (dead-lettered by the
caller), and counted per claimed site under a bounded label. A signed batch
(``pms.inputs.v2``) is verified once, and its site once: every event of it must be of that
site (:func:`postmarket.contracts.batches.decode_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from postmarket.authenticity import AuthenticityError
from postmarket.contracts import ContractViolation, Problem, SiteKeyRegistration
from streams.app import metrics, settings
from streams.site_keys import SiteKeyFollower


class SiteEvent(Protocol):
    @property
    def site_id(self) -> str: ...


EventT = TypeVar("EventT", bound=SiteEvent)

AUTHENTICITY_REQUIRED = settings.event_authenticity == "required"
site_keys = SiteKeyFollower(settings)
"""This worker's copy of every site's public keys, kept current by the join's task."""


@dataclass(frozen=True)
class SignedRecord:
    """A record as its collector signed it: the topic and key it was sent with (a v1
    record re-keyed by the worker keeps them in headers, see streams.agents.ingress)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Any


async def authentic_event(record: SignedRecord, decode: Callable[[], EventT]) -> EventT:
    """The record's event, decoded by ``decode`` only once its signature verifies and
    accepted only if the signing key is its own site's (no check when authenticity is off)."""
    signer = await signer_of(record)
    event = decode()
    check_site(signer, event.site_id, record.value)
    return event


def check_site(signer: SiteKeyRegistration | None, site_id: str, value: bytes) -> None:
    """Refuse an event of another site than its signing key's (None: authenticity is off)."""
    if signer is None:
        return
    try:
        site_keys.keyring.check_site(signer, site_id)
    except AuthenticityError as error:
        raise _refused(error, site_keys.keyring.metric_site(value, site_id)) from None


async def signer_of(record: SignedRecord) -> SiteKeyRegistration | None:
    """The registration of the key that signed this record (None when authenticity is off)."""
    if not AUTHENTICITY_REQUIRED:
        return None
    keyring = site_keys.keyring
    arguments = (record.headers, record.topic, record.key, record.value)
    try:
        try:
            return keyring.verify(*arguments)
        except AuthenticityError as error:
            # A key registered just before its first event may not have reached us yet.
            if error.failure != "unknown_key" or not await site_keys.catch_up():
                raise
            return keyring.verify(*arguments)
    except AuthenticityError as error:
        raise _refused(error, keyring.metric_site(record.value)) from None


def _refused(error: AuthenticityError, metric_site: str) -> ContractViolation:
    """Count a refused record under its (bounded) site label; the violation to dead-letter."""
    metrics.events_unauthentic.labels(metric_site, error.failure).inc()
    return ContractViolation("record", "authenticity", [Problem("<signature>", error.reason)])
