"""How a client authenticates to Kafka: one place that turns settings into client arguments.

Every Kafka client of the project (the collector's producer, the Faust worker, the evidence
sink, the registry publisher, the replay, the stack's own admin) builds its connection from a
:class:`KafkaSecurity`. It holds *where* the secrets are (a password file, a CA file, a
client key), never a secret itself; the password is read from its file, which must be private
to its owner, only at the moment a client is built, so it is not in any repr, log line,
settings dump or ``stack.json``.

Example (plaintext, the default, adds nothing to the client arguments):

>>> KafkaSecurity().kafka_python_kwargs()
{'security_protocol': 'PLAINTEXT'}
>>> KafkaSecurity(protocol="SASL_SSL", username="site-a", password_file=Path("/x/pw"))
KafkaSecurity(protocol='SASL_SSL', sasl_mechanism='SCRAM-SHA-512', username='site-a', ...)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from postmarket.secrets import read_secret_file

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]
SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = ("PLAINTEXT", "SSL", "SASL_SSL")
DEFAULT_MECHANISM: SaslMechanism = "SCRAM-SHA-512"


class RedactedPassword(str):
    """A password handed to a Kafka client: a ``str`` to use, ``'<redacted>'`` to repr.

    kafka-python's admin client logs its whole configuration at DEBUG level (the password
    included); a dict shows its values by ``repr``, so this keeps the password out of logs.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class KafkaClientSettings(Protocol):
    """The Kafka security settings a worker's and a collector's configuration both carry."""

    @property
    def kafka_security_protocol(self) -> SecurityProtocol: ...
    @property
    def kafka_sasl_mechanism(self) -> SaslMechanism: ...
    @property
    def kafka_username(self) -> str: ...
    @property
    def kafka_password_file(self) -> Path | None: ...
    @property
    def kafka_ca_file(self) -> Path | None: ...


class KafkaSecurityError(ValueError):
    """The Kafka security settings are incomplete or a secret file is unusable."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The security of one Kafka connection: protocol, principal, and the files of its secrets.

    ``SASL_SSL`` authenticates ``username`` with the password in ``password_file`` (SCRAM)
    over TLS verified against ``ca_file``. ``SSL`` with ``cert_file``/``key_file``
    authenticates by client certificate (the stack's own admin uses that).
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = DEFAULT_MECHANISM
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: KafkaClientSettings) -> KafkaSecurity:
        """The security ``settings`` configure (secrets stay in their files)."""
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_username,
            password_file=settings.kafka_password_file,
            ca_file=settings.kafka_ca_file,
        )

    def __repr__(self) -> str:
        # Paths are not secret, but the short form keeps doctests and logs readable.
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"username={self.username!r}, ...)"
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol == "SASL_SSL"

    def check(self) -> None:
        """Raise :class:`KafkaSecurityError` if a needed setting is missing (nothing is read)."""
        if self.protocol not in SECURITY_PROTOCOLS:
            raise KafkaSecurityError(f"unknown Kafka security protocol {self.protocol!r}")
        if self.uses_sasl and (not self.username or self.password_file is None):
            raise KafkaSecurityError(
                "Kafka SASL_SSL needs a username and a password file (kafka_username, "
                "kafka_password_file)"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError("a Kafka client certificate needs both its cert and key file")

    def password(self) -> str:
        """The SCRAM password, read now from its private file (never stored on ``self``)."""
        if self.password_file is None:
            raise KafkaSecurityError("no Kafka password file is configured")
        try:
            return RedactedPassword(read_secret_file(self.password_file, "Kafka password").decode())
        except UnicodeDecodeError:
            raise KafkaSecurityError(
                f"Kafka password file {self.password_file} is not UTF-8 text"
            ) from None

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        self.check()
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_check_hostname"] = True
            if self.ca_file is not None:
                kwargs["ssl_cafile"] = str(self.ca_file)
            if self.cert_file is not None and self.key_file is not None:
                kwargs["ssl_certfile"] = str(self.cert_file)
                kwargs["ssl_keyfile"] = str(self.key_file)
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the broker against ``ca_file`` (and its name)."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer or producer (empty for plaintext)."""
        self.check()
        if not self.uses_tls:
            return {}
        kwargs: dict[str, Any] = {
            "security_protocol": self.protocol,
            "ssl_context": self.ssl_context(),
        }
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password()
        return kwargs

    def faust_credentials(self) -> Any:
        """Faust ``broker_credentials`` (None for plaintext); imports Faust, so workers only."""
        self.check()
        if not self.uses_tls:
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            return SASLCredentials(
                username=self.username,
                password=self.password(),
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        return SSLCredentials(self.ssl_context())
