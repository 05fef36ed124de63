"""``postmarket site-keys``: register, rotate and revoke the public keys sites sign with.

The manufacturer's operator runs these with the public key a hospital's IT sent (printed by
``postmarket collector keygen``); the private key never leaves the hospital. Registrations go
to the compacted ``pms.sitekeys.v1`` topic every worker reads.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from postmarket.preflight import (
    CONNECT_TIMEOUT_S,
    BootstrapOption,
    ConnectTimeoutOption,
    ServiceProblem,
    check_kafka,
    describe_error,
    exit_for,
)

if TYPE_CHECKING:
    from postmarket.authenticity import SiteKeyring
    from postmarket.contracts import SiteKeyRegistration
    from postmarket.kafka_security import KafkaSecurity

site_keys_app = typer.Typer(
    help="Sites' public event-signing keys: register, revoke, list.", no_args_is_help=True
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@site_keys_app.command("register")
def register(
    site: Annotated[str, typer.Option("--site", help="the site the key signs for")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="base64 Ed25519 public key (from keygen)")
    ] = None,
    public_key_file: Annotated[
        Path | None,
        typer.Option("--public-key-file", help="a file holding that base64 public key"),
    ] = None,
    bootstrap: BootstrapOption = None,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Accept events signed by this key for SITE (a site may have several keys: rotation)."""
    from pydantic import ValidationError

    from postmarket.contracts import SiteKeyRegistration, utc_now
    from postmarket.contracts.events import site_key_id

    if (public_key is None) == (public_key_file is None):
        raise _fail("give exactly one of --public-key and --public-key-file")
    if public_key is None:
        public_key = _read_public_key(public_key_file)

    try:
        raw = base64.b64decode(public_key, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("--public-key is not base64") from None
    if len(raw) != 32:
        raise _fail(f"--public-key is {len(raw)} bytes; an Ed25519 public key has 32")
    try:
        registration = SiteKeyRegistration(
            site_id=site, key_id=site_key_id(raw), public_key=public_key, registered_at=utc_now()
        )
    except ValidationError as error:
        raise _fail(f"invalid registration: {error.errors()[0]['msg']}") from None
    _publish(registration, bootstrap, connect_timeout)
    typer.echo(f"registered {registration.key_id} for site {site}")


def _read_public_key(path: Path | None) -> str:
    if path is None:
        raise _fail("no --public-key-file given")
    try:
        return path.read_text().strip()
    except OSError as error:
        raise _fail(f"{path}: {error.strerror}") from None


@site_keys_app.command("revoke")
def revoke(
    site: Annotated[str, typer.Option("--site", help="the site the key is registered for")],
    key_id: Annotated[str, typer.Option("--key-id", help="the key to revoke")],
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at", help="when it stops being accepted (ISO time with offset; default now)"
        ),
    ] = None,
    bootstrap: BootstrapOption = None,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Refuse every event signed by KEY_ID from --at on (a stolen key: now; a rotation: later)."""
    from postmarket.contracts import utc_now

    when = at or utc_now()
    if when.tzinfo is None:
        raise _fail("--at needs a UTC offset, e.g. 2026-05-01T00:00:00+00:00")
    keyring = _read_keyring(bootstrap, connect_timeout)
    current = [r for r in keyring.registrations() if r.key_id == key_id and r.site_id == site]
    if not current:
        raise _fail(f"no key {key_id} is registered for site {site}")
    _publish(current[0].model_copy(update={"revoked_at": when}), bootstrap, connect_timeout)
    typer.echo(f"revoked {key_id} of site {site} from {when.isoformat()}")


@site_keys_app.command("list")
def list_keys(
    bootstrap: BootstrapOption = None,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Every registered key: site, key id, registered and revoked times."""
    keyring = _read_keyring(bootstrap, connect_timeout)
    for r in sorted(keyring.registrations(), key=lambda r: (r.site_id, r.registered_at)):
        revoked = f"revoked {r.revoked_at.isoformat()}" if r.revoked_at else "valid"
        typer.echo(f"{r.site_id}\t{r.key_id}\tregistered {r.registered_at.isoformat()}\t{revoked}")


def _read_keyring(bootstrap: str | None, connect_timeout: float) -> SiteKeyring:
    """Every registration on the topic, after a preflight that fails in seconds, not minutes."""
    from kafka.errors import KafkaError

    from postmarket.site_key_topic import read_site_keys

    target, security = _checked_broker(bootstrap, connect_timeout)
    try:
        return read_site_keys(target, security)
    except (KafkaError, TimeoutError) as error:
        raise _fail(
            f"reading pms.sitekeys.v1 from Kafka at {target}: {describe_error(error)}"
        ) from None


def _publish(
    registration: SiteKeyRegistration, bootstrap: str | None, connect_timeout: float
) -> None:
    from kafka.errors import KafkaError

    from postmarket.site_key_topic import publish_site_keys

    target, security = _checked_broker(bootstrap, connect_timeout)
    try:
        publish_site_keys([registration], target, security)
    except KafkaError as error:
        raise _fail(f"Kafka at {target} did not acknowledge: {describe_error(error)}") from None


def _checked_broker(bootstrap: str | None, connect_timeout: float) -> tuple[str, KafkaSecurity]:
    """The broker to use (--bootstrap, else the settings) and its security, once it has
    answered with the site-keys topic; otherwise exit with the preflight's code."""
    from postmarket import topics
    from postmarket.config import Settings

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    security = settings.kafka_security()
    try:
        check_kafka(target, security, connect_timeout, topics=[topics.SITE_KEYS])
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    return target, security
