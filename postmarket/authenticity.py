"""Event authenticity: every collector record is signed with its site's own Ed25519 key.

A signature covers domain-separated, length-prefixed bytes of the topic, the record key
and the value, so a prediction cannot be replayed as a follow-up, re-keyed, or altered
in any field. It travels in two Kafka record headers (:data:`SIGNATURE_HEADER`,
:data:`KEY_ID_HEADER`); the event bytes stay exactly what the contracts define.

Workers hold every site's registered public keys (:class:`SiteKeyring`, filled from the
compacted ``pms.sitekeys.v1`` topic) and accept a record only when its key is registered,
not revoked, belongs to the site the event claims, and the signature verifies. Anything
else is refused with a :class:`AuthenticityError` naming the reason.

Importable by a collector install (no Faust, no SQLAlchemy). The private key is read
only from a file private to its owner, and never appears in a ``repr``, log or error.

>>> signing = SigningKey.from_seed(bytes(32))
>>> registration = signing.registration("site-a", registered_at=datetime(2026, 1, 1, tzinfo=UTC))
>>> keyring = SiteKeyring([registration])
>>> headers = signing.sign("pms.predictions.v1", b"c-1", b'{"site_id": "site-a"}')
>>> keyring.verify(headers, "pms.predictions.v1", b"c-1", b'{"site_id": "site-a"}').site_id
'site-a'
>>> keyring.verify(headers, "pms.followups.v1", b"c-1", b'{"site_id": "site-a"}')
Traceback (most recent call last):
...
postmarket.authenticity.AuthenticityError: bad_signature: the signature does not match ...
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from postmarket.contracts.events import SiteKeyRegistration, site_key_id, utc_now
from postmarket.secrets import SecretFileError, read_secret_file, write_secret_file

SIGNATURE_HEADER = "pms-signature"
KEY_ID_HEADER = "pms-key-id"
DOMAIN = b"postmarket/event-signature/v1"
"""Separates these signatures from anything else the key could ever sign."""

Headers = list[tuple[str, bytes]]
AuthenticityFailure = Literal[
    "unsigned", "unknown_key", "revoked_key", "wrong_site", "bad_signature"
]
"""Why a record was refused; bounded, so it can be a metric label."""
UNKNOWN_SITE = "unknown"
"""Metric label of a refused record whose claimed site has no registered key."""


class SigningKeyError(ValueError):
    """The signing key file is missing, accessible to others, or not an Ed25519 key."""


class AuthenticityError(ValueError):
    """A record that is not provably from the site it claims; never processed."""

    def __init__(self, failure: AuthenticityFailure, reason: str) -> None:
        self.failure = failure
        self.reason = reason
        super().__init__(f"{failure}: {reason}")


def canonical_message(topic: str, key: bytes | None, value: bytes) -> bytes:
    """The exact bytes a signature covers: domain, topic, key (or its absence), value.

    Each part is length-prefixed, so no two different records share a message.
    """
    parts = [DOMAIN, topic.encode(), b"\x00" if key is None else b"\x01" + key, value]
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


class RecordSigner(Protocol):
    """What signs records on their way to Kafka (a :class:`SigningKey`, or a test double)."""

    def sign(self, topic: str, key: bytes | None, value: bytes) -> Headers: ...


class SigningKey:
    """A site's Ed25519 private key; shows nothing of itself in ``repr`` or ``str``."""

    __slots__ = ("_private", "key_id", "public_key")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = site_key_id(self.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, private=<redacted>)"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from 32 secret bytes (simulated sites and tests derive theirs this way)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_file(cls, path: Path) -> SigningKey:
        """Read a PEM (PKCS#8) private key from a file private to its owner."""
        try:
            pem = read_secret_file(path, "signing key")
        except SecretFileError as error:
            raise SigningKeyError(str(error)) from None
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            # The loader's message could quote the content: say only what is wrong.
            raise SigningKeyError(f"signing key file {path} is not a PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key file {path} holds a key that is not Ed25519")
        return cls(private)

    def write(self, path: Path) -> None:
        """Save the private key as PEM in a new 0600 file."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret_file(path, pem)

    @property
    def public_key_base64(self) -> str:
        return base64.b64encode(self.public_key).decode()

    def registration(
        self, site_id: str, registered_at: datetime | None = None
    ) -> SiteKeyRegistration:
        """The record that registers this key's public half for ``site_id``."""
        return SiteKeyRegistration(
            site_id=site_id,
            key_id=self.key_id,
            public_key=self.public_key_base64,
            registered_at=registered_at or utc_now(),
        )

    def sign(self, topic: str, key: bytes | None, value: bytes) -> Headers:
        """The record headers that prove this key's holder sent exactly these bytes."""
        signature = self._private.sign(canonical_message(topic, key, value))
        return [(KEY_ID_HEADER, self.key_id.encode()), (SIGNATURE_HEADER, signature)]


@dataclass(frozen=True)
class _PublicKey:
    registration: SiteKeyRegistration
    key: VerifyKey
    """Verified with libsodium: a worker checks every record, and libsodium's Ed25519
    verification took half the time of OpenSSL's (through ``cryptography``) here."""


class SiteKeyring:
    """The registered public keys of every site, by key id (latest registration wins)."""

    def __init__(self, registrations: Iterable[SiteKeyRegistration] = ()) -> None:
        self._keys: dict[str, _PublicKey] = {}
        for registration in registrations:
            self.apply(registration)

    def apply(self, registration: SiteKeyRegistration) -> None:
        """Register, rotate in, or revoke one key (a later record replaces an earlier one)."""
        public = VerifyKey(registration.public_key_bytes)
        self._keys[registration.key_id] = _PublicKey(registration, public)

    def __len__(self) -> int:
        return len(self._keys)

    def registrations(self) -> list[SiteKeyRegistration]:
        return [entry.registration for entry in self._keys.values()]

    def sites(self) -> set[str]:
        """Sites with at least one registered key (revoked or not): bounded metric labels."""
        return {entry.registration.site_id for entry in self._keys.values()}

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def verify(
        self,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
        topic: str,
        key: bytes | None,
        value: bytes,
        at: datetime | None = None,
    ) -> SiteKeyRegistration:
        """The registration of the key that signed this record, or :class:`AuthenticityError`.

        The caller must still check that the event's site is that registration's site
        (:meth:`check_site`): the signature proves who sent the bytes, not what they say.
        """
        found = record_signature(headers)
        if found is None:
            raise AuthenticityError("unsigned", "the record carries no signature headers")
        key_id, signature = found
        entry = self._keys.get(key_id)
        if entry is None:
            raise AuthenticityError("unknown_key", f"key id {key_id[:40]!r} is not registered")
        if entry.registration.revoked(at or datetime.now(UTC)):
            site = entry.registration.site_id
            raise AuthenticityError("revoked_key", f"key {key_id} of site {site} is revoked")
        try:
            entry.key.verify(canonical_message(topic, key, value), signature)
        except (BadSignatureError, ValueError):  # ValueError: not a 64-byte signature
            raise AuthenticityError(
                "bad_signature",
                f"the signature does not match the record (key {key_id} of site "
                f"{entry.registration.site_id}); it was altered or signed for another topic",
            ) from None
        return entry.registration

    def check_site(self, registration: SiteKeyRegistration, claimed_site_id: str) -> None:
        """Refuse an event whose site is not the one its signing key is registered to."""
        if claimed_site_id != registration.site_id:
            raise AuthenticityError(
                "wrong_site",
                f"key {registration.key_id} belongs to site {registration.site_id}, "
                f"not {claimed_site_id[:128]}",
            )

    def metric_site(self, value: bytes | None, claimed_site_id: str | None = None) -> str:
        """The ``site_id`` label for a refused record: its claimed site if that site has
        registered keys, else :data:`UNKNOWN_SITE` (labels stay bounded under forgery)."""
        site = claimed_site_id if claimed_site_id is not None else claimed_site(value)
        return site if site is not None and site in self.sites() else UNKNOWN_SITE


def record_signature(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> tuple[str, bytes] | None:
    """(key id, signature) from a record's headers, or None when either is missing."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, bytes] = {}
    for name, content in pairs:
        if name in (KEY_ID_HEADER, SIGNATURE_HEADER) and content is not None:
            found[name] = bytes(content)
    if KEY_ID_HEADER not in found or SIGNATURE_HEADER not in found:
        return None
    return found[KEY_ID_HEADER].decode("utf-8", "replace"), found[SIGNATURE_HEADER]


def claimed_site(value: bytes | None) -> str | None:
    """The ``site_id`` a record's JSON claims, read leniently (None if it claims none)."""
    if not value:
        return None
    try:
        payload = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        return None
    site = payload.get("site_id") if isinstance(payload, dict) else None
    return site if isinstance(site, str) else None
