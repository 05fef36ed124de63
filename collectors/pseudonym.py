"""Keyed pseudonyms: the same study always maps to the same pseudonym at a site, and
nobody without the site's pseudonym key can reverse or brute-force one (unlike a plain hash).

The pseudonym key is the site's HMAC secret, not its Ed25519 signing key (the "site key",
whose public half the manufacturer registers with ``postmarket site-keys``). Hospitals
configure it as ``pseudonym_key_file`` / ``POSTMARKET_PSEUDONYM_KEY_FILE`` (the earlier
``site_key_file`` names are read with a warning). It is read from a file, never printed,
and wrapped so that an accidental ``repr`` or log line shows nothing of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from postmarket.secrets import SecretFileError, read_secret_file

MIN_KEY_BYTES = 32


class PseudonymKeyError(ValueError):
    """The pseudonym key (``pseudonym_key_file``) is missing, too short or readable by others."""


class PseudonymKey:
    """The site's pseudonymisation secret (HMAC-SHA256 key)."""

    __slots__ = ("_keyed", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise PseudonymKeyError(
                f"site key must be at least {MIN_KEY_BYTES} bytes, got {len(secret)}"
            )
        self._secret = secret
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "PseudonymKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[PseudonymKey], tuple[bytes]]:
        # copy and pickle rebuild from the secret: a prepared HMAC cannot be pickled
        return (PseudonymKey, (self._secret,))

    @classmethod
    def from_file(cls, path: Path) -> PseudonymKey:
        """Read a key file, refusing one that group or others can read."""
        try:
            return cls(read_secret_file(path, "site key"))
        except SecretFileError as error:
            raise PseudonymKeyError(str(error)) from None

    @classmethod
    def from_environment(cls, variable: str = "POSTMARKET_PSEUDONYM_KEY_FILE") -> PseudonymKey:
        """Read the key from the file named by ``variable``."""
        location = os.environ.get(variable)
        if not location:
            raise PseudonymKeyError(f"{variable} is not set: name the site key file there")
        try:
            return cls.from_file(Path(location))
        except PseudonymKeyError as error:
            raise PseudonymKeyError(f"{variable}: {error}") from None

    def digest(self, purpose: str, identifier: str) -> bytes:
        """HMAC-SHA256 of ``identifier`` under this key, separated by ``purpose``."""
        message = purpose.encode() + b"\x00" + identifier.encode()
        mac = self._keyed.copy()  # the key's padding is hashed once, not per call
        mac.update(message)
        return mac.digest()

    def pseudonym(self, purpose: str, identifier: str) -> str:
        """A stable pseudonym of ``identifier``; ``purpose`` separates case, reader, station."""
        digest = self.digest(purpose, identifier)
        return f"{purpose[:1]}-" + base64.b32encode(digest[:20]).decode().lower()


def case_pseudonym(key: PseudonymKey, study_instance_uid: str) -> str:
    """The case pseudonym of a study: links a prediction to its follow-ups."""
    return key.pseudonym("case", study_instance_uid)


def reader_pseudonym(key: PseudonymKey, reader_id: str) -> str:
    return key.pseudonym("reader", reader_id)


def station_pseudonym(key: PseudonymKey, station_name: str) -> str:
    return key.pseudonym("station", station_name)
