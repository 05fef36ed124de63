"""Collector configuration: ``collector.toml`` and the environment, secrets only by file.

Precedence: ``POSTMARKET_SITE_ID`` and ``POSTMARKET_SITE_KEY`` (the *path* of the key
file, never the key) override the ``[collector]`` table of the TOML file; everything else
has loopback defaults. The key itself is read by :class:`~collectors.pseudonym.SiteKey`,
which refuses a file others can read and never shows the key in a message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collectors.pseudonym import SiteKey
from postmarket.contracts.events import Identifier

SITE_ID_ENV = "POSTMARKET_SITE_ID"
SITE_KEY_ENV = "POSTMARKET_SITE_KEY"


class CollectorConfigError(ValueError):
    """The collector cannot start: its configuration is missing or invalid."""


class CollectorSettings(BaseModel):
    """Everything one site's collector needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_id: Identifier
    site_key_file: Path = Field(description="0600 file holding the site's HMAC key")
    kafka_bootstrap: str = "127.0.0.1:9092"
    outbox_path: Path = Path("collector-outbox.db")
    outbox_max_bytes: int = Field(1024**3, gt=0)
    outbox_warn_fraction: float = Field(0.8, gt=0.0, le=1.0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9465, ge=0, le=65535)

    def site_key(self) -> SiteKey:
        return SiteKey.from_file(self.site_key_file)


def load_settings(
    config: Path | None = None, environ: Mapping[str, str] | None = None
) -> CollectorSettings:
    """Settings from ``config`` (optional TOML) overlaid by the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config is not None:
        try:
            document = tomllib.loads(config.read_text())
        except OSError as error:
            raise CollectorConfigError(f"{config}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise CollectorConfigError(f"{config}: not valid TOML ({error})") from None
        table = document.get("collector", document)
        if not isinstance(table, dict):
            raise CollectorConfigError(f"{config}: [collector] must be a table")
        values.update(table)
        if "site_key_file" in values:  # relative to the config file, like most tools do
            values["site_key_file"] = config.parent / Path(values["site_key_file"])
    if env.get(SITE_ID_ENV):
        values["site_id"] = env[SITE_ID_ENV]
    if env.get(SITE_KEY_ENV):
        values["site_key_file"] = Path(env[SITE_KEY_ENV])
    missing = [
        f"{name} ({variable} or [collector] {name} in --config)"
        for name, variable in (("site_id", SITE_ID_ENV), ("site_key_file", SITE_KEY_ENV))
        if name not in values
    ]
    if missing:
        raise CollectorConfigError("missing " + "; ".join(missing))
    try:
        return CollectorSettings(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise CollectorConfigError(f"invalid collector settings: {problems}") from None
