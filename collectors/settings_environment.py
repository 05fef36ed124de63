"""Which ``POSTMARKET_...`` variable sets which collector setting, and how a variable's text
becomes a setting's value (lists split, a table turned on by its switch variable).

:mod:`collectors.settings` overlays the TOML file with :func:`apply_environment` before it
validates; an error names the setting and its variable (:func:`setting_name`), never a
secret. A variable naming a secret's file ends in ``_FILE`` and holds the file's *path*.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from postmarket.secrets import looks_like_path

logger = logging.getLogger(__name__)

SITE_ID_ENV = "POSTMARKET_SITE_ID"
PSEUDONYM_KEY_ENV = "POSTMARKET_PSEUDONYM_KEY_FILE"
SIGNING_KEY_ENV = "POSTMARKET_SIGNING_KEY_FILE"
RENAMED_ENV = {
    "POSTMARKET_SITE_KEY": PSEUDONYM_KEY_ENV,
    "POSTMARKET_SIGNING_KEY": SIGNING_KEY_ENV,
}
"""Old names, refused: their value was often the key itself, not its file."""
DEPRECATED_ENV = {"POSTMARKET_SITE_KEY_FILE": PSEUDONYM_KEY_ENV}
"""Old names still read, with a warning naming the new one: "site key" now means only the
signing key a site registers (``postmarket site-keys``), never the pseudonym key."""
DEPRECATED_SETTINGS = {"site_key_file": "pseudonym_key_file"}
"""Old ``[collector]`` settings still read, with a warning, for the same reason."""
KAFKA_ENV = {
    "kafka_bootstrap": "POSTMARKET_KAFKA_BOOTSTRAP",
    "kafka_security_protocol": "POSTMARKET_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "POSTMARKET_KAFKA_SASL_MECHANISM",
    "kafka_username": "POSTMARKET_KAFKA_USERNAME",
    "kafka_password_file": "POSTMARKET_KAFKA_PASSWORD_FILE",
    "kafka_ca_file": "POSTMARKET_KAFKA_CA_FILE",
}
"""Kafka connection settings the environment may set (the password only as a file path)."""
INPUT_CONTRACT_ENV = "POSTMARKET_INPUT_CONTRACT"
STOW_TOKEN_ENV = "POSTMARKET_STOW_TOKEN_FILE"  # noqa: S105 - a variable naming the token's file
MLLP_ENV = {
    "mllp_host": "POSTMARKET_MLLP_HOST",
    "mllp_port": "POSTMARKET_MLLP_PORT",
    "mllp_allowed_peers": "POSTMARKET_MLLP_ALLOWED_PEERS",
    "mllp_max_message_bytes": "POSTMARKET_MLLP_MAX_MESSAGE_BYTES",
    "mllp_max_connections": "POSTMARKET_MLLP_MAX_CONNECTIONS",
    "mllp_idle_timeout_s": "POSTMARKET_MLLP_IDLE_TIMEOUT_S",
    "mllp_tls_cert_file": "POSTMARKET_MLLP_TLS_CERT_FILE",
    "mllp_tls_key_file": "POSTMARKET_MLLP_TLS_KEY_FILE",
}
"""The HL7 MLLP listener's settings the environment may set: every one of them, so a
container configured by environment alone can receive results. ``POSTMARKET_MLLP_ALLOWED_PEERS``
lists addresses or networks separated by commas or spaces; the TLS key only as a file path."""
METRICS_ENV = {
    "metrics_host": "POSTMARKET_METRICS_HOST",
    "metrics_port": "POSTMARKET_METRICS_PORT",
    "metrics_tls_cert_file": "POSTMARKET_METRICS_TLS_CERT_FILE",
    "metrics_tls_key_file": "POSTMARKET_METRICS_TLS_KEY_FILE",
    "metrics_basic_auth_user": "POSTMARKET_METRICS_BASIC_AUTH_USER",
    "metrics_basic_auth_password_file": "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE",
    "metrics_targets_dir": "POSTMARKET_METRICS_TARGETS_DIR",
}
"""The /metrics endpoint's settings (the TLS key and the password only as file paths)."""
STORAGE_ENV = {
    "outbox_path": "POSTMARKET_OUTBOX_PATH",
    "outbox_max_bytes": "POSTMARKET_OUTBOX_MAX_BYTES",
    "outbox_warn_fraction": "POSTMARKET_OUTBOX_WARN_FRACTION",
    "state_path": "POSTMARKET_STATE_PATH",
    "waiting_expiry_days": "POSTMARKET_WAITING_EXPIRY_DAYS",
}
"""Where events and the case index wait on disk, and for how long."""
INBOX_ENV = {
    "inbox.path": "POSTMARKET_INBOX_PATH",
    "inbox.processed": "POSTMARKET_INBOX_PROCESSED",
    "inbox.rejected": "POSTMARKET_INBOX_REJECTED",
    "inbox.processed_action": "POSTMARKET_INBOX_PROCESSED_ACTION",
    "inbox.poll_seconds": "POSTMARKET_INBOX_POLL_SECONDS",
    "inbox.settle_seconds": "POSTMARKET_INBOX_SETTLE_SECONDS",
    "inbox.max_dicom_bytes": "POSTMARKET_INBOX_MAX_DICOM_BYTES",
    "inbox.max_ai_output_bytes": "POSTMARKET_INBOX_MAX_AI_OUTPUT_BYTES",
    "inbox.max_followup_bytes": "POSTMARKET_INBOX_MAX_FOLLOWUP_BYTES",
}
"""The watched folder's settings, ``[collector.inbox]`` in the TOML file."""
SCP_ENV = {
    "scp.host": "POSTMARKET_SCP_HOST",
    "scp.port": "POSTMARKET_SCP_PORT",
    "scp.ae_title": "POSTMARKET_SCP_AE_TITLE",
    "scp.allowed_calling_ae_titles": "POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES",
}
"""The C-STORE SCP's settings, ``[collector.scp]``; the AE titles separated by commas (an AE
title may hold a space)."""
STOW_RS_ENV = {
    "stow_rs.host": "POSTMARKET_STOW_HOST",
    "stow_rs.port": "POSTMARKET_STOW_PORT",
    "stow_rs.allowed_peers": "POSTMARKET_STOW_ALLOWED_PEERS",
    "stow_rs.token_file": STOW_TOKEN_ENV,
    "stow_rs.tls_cert_file": "POSTMARKET_STOW_TLS_CERT_FILE",
    "stow_rs.tls_key_file": "POSTMARKET_STOW_TLS_KEY_FILE",
    "stow_rs.max_request_bytes": "POSTMARKET_STOW_MAX_REQUEST_BYTES",
}
"""The STOW-RS endpoint's settings, ``[collector.stow_rs]``; the peers as MLLP's are listed."""
SECTION_SWITCH_ENV = {
    "inbox": INBOX_ENV["inbox.path"],
    "scp": SCP_ENV["scp.port"],
    "stow_rs": STOW_RS_ENV["stow_rs.port"],
}
"""The variable that turns a section on without its TOML table: the inbox by its folder, a
listener by its port (as ``POSTMARKET_MLLP_PORT`` turns MLLP on). The section's other
variables only set a section that is on: alone they are refused, since they would do nothing."""
SECTION_TITLE = {"inbox": "the inbox", "scp": "the C-STORE SCP", "stow_rs": "STOW-RS"}
LIST_SEPARATORS = {
    "mllp_allowed_peers": r"[\s,]+",
    "stow_rs.allowed_peers": r"[\s,]+",
    "scp.allowed_calling_ae_titles": r"\s*,\s*",
}
"""How a variable of a list setting separates its items."""
SECRET_FILE_ENV = {
    "pseudonym_key_file": PSEUDONYM_KEY_ENV,
    "signing_key_file": SIGNING_KEY_ENV,
    "kafka_password_file": KAFKA_ENV["kafka_password_file"],
    "token_file": STOW_TOKEN_ENV,
    "stow_rs.token_file": STOW_TOKEN_ENV,
    "stow_rs.tls_key_file": STOW_RS_ENV["stow_rs.tls_key_file"],
    "mllp_tls_key_file": MLLP_ENV["mllp_tls_key_file"],
    "metrics_tls_key_file": METRICS_ENV["metrics_tls_key_file"],
    "metrics_basic_auth_password_file": METRICS_ENV["metrics_basic_auth_password_file"],
}
"""The variables that name a secret's file; each ends in ``_FILE``."""
SETTING_ENV = {
    "site_id": SITE_ID_ENV,
    "pseudonym_key_file": PSEUDONYM_KEY_ENV,
    "signing_key_file": SIGNING_KEY_ENV,
    **KAFKA_ENV,
    "input_contract": INPUT_CONTRACT_ENV,
    **STORAGE_ENV,
    **METRICS_ENV,
    **MLLP_ENV,
    **INBOX_ENV,
    **SCP_ENV,
    **STOW_RS_ENV,
}
"""Every collector setting the environment overrides (``section.name`` inside a table), and
its variable."""
TOML_ONLY = {
    "stack_home": "deprecated: metrics_targets_dir (POSTMARKET_METRICS_TARGETS_DIR) replaces it",
    "followups": "tables mapping an export's columns, codes and words to labels: a file, "
    "mounted like any configuration file (a ConfigMap), not a line of variables",
    "ai_sr": "the device's SR concepts and coded values, mapped as the follow-ups are",
}
"""Collector settings deliberately read from the TOML file only, and why."""


class CollectorConfigError(ValueError):
    """The collector cannot start: its configuration is missing or invalid."""


def secret_setting(name: str) -> str:
    """A secret file's setting and the variable that overrides it, for error messages."""
    variable = SECRET_FILE_ENV.get(name)
    return f"{name} ({variable})" if variable else name


def setting_name(name: str) -> str:
    """A ``[collector]`` setting and the variable that overrides it, for error messages."""
    variable = SETTING_ENV.get(name)
    return f"{name} ({variable})" if variable else name


def renamed_variable_problem(environ: Mapping[str, str]) -> str | None:
    """One line for an old key variable still set, naming its successor (never its value)."""
    for old, new in RENAMED_ENV.items():
        if environ.get(old):
            return f"{old} is no longer read: unset it and set {new} to the key file's path"
    return None


def take_deprecated_names(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Move each deprecated setting of ``values`` (the TOML file's) to its new name, and
    return ``environ`` with each deprecated variable read as its new one; a warning names
    the new name each time. Both names set is refused: which one is meant is not guessable."""
    for old, new in DEPRECATED_SETTINGS.items():
        if old not in values:
            continue
        if new in values:
            raise CollectorConfigError(f"[collector] sets both {old} and {new}: keep only {new}")
        logger.warning("[collector] %s is deprecated: rename it %s", old, new)
        values[new] = values.pop(old)
    env = dict(environ)
    for old, new in DEPRECATED_ENV.items():
        if not env.get(old, "").strip():
            continue
        if env.get(new, "").strip():
            raise CollectorConfigError(f"both {old} and {new} are set: unset {old}")
        logger.warning("%s is deprecated: set %s instead", old, new)
        env[new] = env.pop(old)
    return env


def variable_at(location: tuple[int | str, ...]) -> str | None:
    """The variable of the setting at ``location``; an item of a list has its list's."""
    for end in range(len(location), 0, -1):
        variable = SETTING_ENV.get(".".join(map(str, location[:end])))
        if variable is not None:
            return variable
    return None


def apply_environment(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """Overlay ``values`` (the TOML file's) with every variable of :data:`SETTING_ENV` that
    is set and not blank, as text for the model to validate; lists split as
    :data:`LIST_SEPARATORS` says. A section's variable sets its table, which must be on: in
    the file, or by its :data:`SECTION_SWITCH_ENV` variable."""
    for name, variable in SETTING_ENV.items():
        value = env.get(variable, "").strip()
        if not value:
            continue
        if name.endswith("tls_cert_file") and not looks_like_path(value):
            # A certificate is no secret, but a PEM pasted for its path is no one-line message.
            raise CollectorConfigError(f"{setting_name(name)}: the value is not a file path")
        parsed: str | tuple[str, ...] = value
        separator = LIST_SEPARATORS.get(name)
        if separator is not None:
            parsed = tuple(item for item in re.split(separator, value) if item)
            if not parsed:
                item = "AE title" if name.startswith("scp.") else "address or network"
                raise CollectorConfigError(
                    f"{variable} lists no {item}: separate them with commas, or unset it"
                )
        section, _, field = name.rpartition(".")
        if not section:
            values[name] = parsed
            continue
        table = values.get(section)
        if not isinstance(table, dict):
            switch = SECTION_SWITCH_ENV[section]
            if not env.get(switch, "").strip():
                raise CollectorConfigError(
                    f"{variable} is set but {SECTION_TITLE[section]} is off: configure "
                    f"[collector.{section}] in --config, or set {switch}, or unset the variable"
                )
            table = {}
        values[section] = table | {field: parsed}
