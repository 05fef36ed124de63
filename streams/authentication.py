"""A case record's authenticity, in one call: its signature verified before anything reads
the event, then the event decoded, then its site checked against the signing key's.

A record that is not provably from a registered, unrevoked key of the site it claims is
refused as a :class:`ContractViolation` with reason ``authenticity`` (dead-lettered by the
caller), and counted per claimed site under a bounded label.
"""

from __future__ import annotations

from collections.abc import Callable
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


async def authentic_event(
    message: Any, value: bytes | None, decode: Callable[[], EventT]
) -> EventT:
    """The record's event, decoded by ``decode`` only once its signature verifies and
    accepted only if the signing key is its own site's (no check when authenticity is off)."""
    signer = await _signer(message, value)
    event = decode()
    if signer is not None:
        try:
            site_keys.keyring.check_site(signer, event.site_id)
        except AuthenticityError as error:
            raise _refused(error, site_keys.keyring.metric_site(value, event.site_id)) from None
    return event


async def _signer(message: Any, value: bytes | None) -> SiteKeyRegistration | None:
    """The registration of the key that signed this record (None when authenticity is off)."""
    if not AUTHENTICITY_REQUIRED:
        return None
    keyring = site_keys.keyring
    arguments = (message.headers, message.topic, message.key, value or b"")
    try:
        try:
            return keyring.verify(*arguments)
        except AuthenticityError as error:
            # A key registered just before its first event may not have reached us yet.
            if error.failure != "unknown_key" or not await site_keys.catch_up():
                raise
            return keyring.verify(*arguments)
    except AuthenticityError as error:
        raise _refused(error, keyring.metric_site(value)) from None


def _refused(error: AuthenticityError, metric_site: str) -> ContractViolation:
    """Count a refused record under its (bounded) site label; the violation to dead-letter."""
    metrics.events_unauthentic.labels(metric_site, error.failure).inc()
    return ContractViolation("record", "authenticity", [Problem("<signature>", error.reason)])
