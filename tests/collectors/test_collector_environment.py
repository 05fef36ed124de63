"""Every collector setting comes from the environment or the TOML file, consistently (issue 19).

A set, non-blank ``POSTMARKET_...`` variable overrides its setting of the TOML file and only
it; a bad value is refused in one line naming the variable; a secret is named by the path of
its file and never shown; the table in docs/hospital-it.md lists every variable. The MLLP
listener's own variables are specified in ``test_collector_mllp_environment.py``.
"""

from __future__ import annotations

import logging
import os
import socket
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from collectors.settings import CollectorConfigError, CollectorSettings, load_settings
from collectors.settings_environment import (
    MLLP_ENV,
    SECRET_FILE_ENV,
    SECTION_SWITCH_ENV,
    SETTING_ENV,
    TOML_ONLY,
)
from launcher.cli import app
from postmarket.secrets import NOT_A_PATH, write_secret_file
from tests.tls_certificates import self_signed_certificate

HOSPITAL_IT = Path(__file__).parents[2] / "docs" / "hospital-it.md"
SITE = '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
TOML_EVERYTHING = (
    SITE
    + """signing_key_file = "toml-signing.pem"
kafka_bootstrap = "kafka.toml:9092"
kafka_security_protocol = "SSL"
kafka_sasl_mechanism = "SCRAM-SHA-512"
kafka_username = "toml-user"
kafka_password_file = "toml.password"
kafka_ca_file = "toml-ca.pem"
input_contract = "v2"
outbox_path = "toml-outbox.db"
outbox_max_bytes = 1000000
outbox_warn_fraction = 0.8
state_path = "toml-cases.db"
waiting_expiry_days = 30
metrics_host = "127.0.0.1"
metrics_port = 9465
metrics_tls_cert_file = "toml-metrics.crt"
metrics_tls_key_file = "toml-metrics.key"
metrics_basic_auth_user = "toml-prometheus"
metrics_basic_auth_password_file = "toml-metrics.password"
metrics_targets_dir = "toml-targets"

[collector.inbox]
path = "toml-inbox"
processed = "toml-processed"
rejected = "toml-rejected"
processed_action = "move"
poll_seconds = 1.0
settle_seconds = 0.5
max_dicom_bytes = 4000
max_ai_output_bytes = 1000
max_followup_bytes = 2000

[collector.scp]
host = "127.0.0.1"
port = 11112
ae_title = "POSTMARKET"
allowed_calling_ae_titles = ["PACS1"]

[collector.stow_rs]
host = "127.0.0.1"
port = 8104
allowed_peers = ["10.9.9.9"]
token_file = "toml-stow.token"
tls_cert_file = "toml-stow.crt"
tls_key_file = "toml-stow.key"
max_request_bytes = 9000
"""
)

MAPPINGS: dict[str, tuple[str, Any]] = {
    "POSTMARKET_SITE_ID": ("site-b", "site-b"),
    "POSTMARKET_PSEUDONYM_KEY_FILE": ("/run/secrets/site.key", Path("/run/secrets/site.key")),
    "POSTMARKET_SIGNING_KEY_FILE": ("/run/secrets/signing.pem", Path("/run/secrets/signing.pem")),
    "POSTMARKET_KAFKA_BOOTSTRAP": ("kafka.central:9093", "kafka.central:9093"),
    "POSTMARKET_KAFKA_SECURITY_PROTOCOL": ("SASL_SSL", "SASL_SSL"),
    "POSTMARKET_KAFKA_SASL_MECHANISM": ("SCRAM-SHA-256", "SCRAM-SHA-256"),
    "POSTMARKET_KAFKA_USERNAME": ("site-site-b", "site-site-b"),
    "POSTMARKET_KAFKA_PASSWORD_FILE": ("/run/secrets/kafka", Path("/run/secrets/kafka")),
    "POSTMARKET_KAFKA_CA_FILE": ("/etc/pms/ca.pem", Path("/etc/pms/ca.pem")),
    "POSTMARKET_INPUT_CONTRACT": ("v1", "v1"),
    "POSTMARKET_OUTBOX_PATH": ("/var/lib/pms/outbox.db", Path("/var/lib/pms/outbox.db")),
    "POSTMARKET_OUTBOX_MAX_BYTES": ("2147483648", 2147483648),
    "POSTMARKET_OUTBOX_WARN_FRACTION": ("0.9", 0.9),
    "POSTMARKET_STATE_PATH": ("/var/lib/pms/cases.db", Path("/var/lib/pms/cases.db")),
    "POSTMARKET_WAITING_EXPIRY_DAYS": ("14", 14.0),
    "POSTMARKET_METRICS_HOST": ("0.0.0.0", "0.0.0.0"),  # noqa: S104 - the value under test
    "POSTMARKET_METRICS_PORT": ("9466", 9466),
    "POSTMARKET_METRICS_TLS_CERT_FILE": ("/run/tls/m.crt", Path("/run/tls/m.crt")),
    "POSTMARKET_METRICS_TLS_KEY_FILE": ("/run/tls/m.key", Path("/run/tls/m.key")),
    "POSTMARKET_METRICS_BASIC_AUTH_USER": ("prometheus", "prometheus"),
    "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE": ("/run/secrets/mp", Path("/run/secrets/mp")),
    "POSTMARKET_METRICS_TARGETS_DIR": ("/etc/prometheus/t", Path("/etc/prometheus/t")),
    "POSTMARKET_INBOX_PATH": ("/data/inbox", Path("/data/inbox")),
    "POSTMARKET_INBOX_PROCESSED": ("/data/done", Path("/data/done")),
    "POSTMARKET_INBOX_REJECTED": ("/data/refused", Path("/data/refused")),
    "POSTMARKET_INBOX_PROCESSED_ACTION": ("delete", "delete"),
    "POSTMARKET_INBOX_POLL_SECONDS": ("2.5", 2.5),
    "POSTMARKET_INBOX_SETTLE_SECONDS": ("3", 3.0),
    "POSTMARKET_INBOX_MAX_DICOM_BYTES": ("5000", 5000),
    "POSTMARKET_INBOX_MAX_AI_OUTPUT_BYTES": ("2048", 2048),
    "POSTMARKET_INBOX_MAX_FOLLOWUP_BYTES": ("4096", 4096),
    "POSTMARKET_SCP_HOST": ("10.20.0.5", "10.20.0.5"),
    "POSTMARKET_SCP_PORT": ("11113", 11113),
    "POSTMARKET_SCP_AE_TITLE": ("PMS_SITE_B", "PMS_SITE_B"),
    "POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES": (
        "PACS1, CT ROOM 2,MR_3",
        ("PACS1", "CT ROOM 2", "MR_3"),
    ),
    "POSTMARKET_STOW_HOST": ("10.20.0.6", "10.20.0.6"),
    "POSTMARKET_STOW_PORT": ("8105", 8105),
    "POSTMARKET_STOW_ALLOWED_PEERS": (
        "10.20.0.15 10.30.0.0/24,fd00::9",
        tuple(map(ip_network, ("10.20.0.15/32", "10.30.0.0/24", "fd00::9/128"))),
    ),
    "POSTMARKET_STOW_TOKEN_FILE": ("/run/secrets/stow", Path("/run/secrets/stow")),
    "POSTMARKET_STOW_TLS_CERT_FILE": ("/run/tls/s.crt", Path("/run/tls/s.crt")),
    "POSTMARKET_STOW_TLS_KEY_FILE": ("/run/tls/s.key", Path("/run/tls/s.key")),
    "POSTMARKET_STOW_MAX_REQUEST_BYTES": ("1073741824", 1073741824),
}
"""Every variable but MLLP's: the value set, and the setting it must become."""
SETTING_OF = {variable: setting for setting, variable in SETTING_ENV.items()}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site whose collector.toml sets every setting; the environment sets none."""
    for variable in list(os.environ):
        if variable.startswith("POSTMARKET_"):
            monkeypatch.delenv(variable)
    write_secret_file(tmp_path / "site.key", b"environment-test-site-secret-0123456789")
    (tmp_path / "collector.toml").write_text(TOML_EVERYTHING)
    return tmp_path


def _load(site: Path, environment: dict[str, str]) -> CollectorSettings:
    return load_settings(site / "collector.toml", environ=environment)


def _value(settings: CollectorSettings, setting: str) -> Any:
    section, _, name = setting.rpartition(".")
    return getattr(getattr(settings, section) if section else settings, name)


def _with(settings: CollectorSettings, setting: str, value: Any) -> CollectorSettings:
    section, _, name = setting.rpartition(".")
    if not section:
        return settings.model_copy(update={name: value})
    table = getattr(settings, section)
    return settings.model_copy(update={section: table.model_copy(update={name: value})})


def _sections() -> dict[str, type[BaseModel]]:
    """The tables of settings a variable may set, by their ``[collector.NAME]``."""
    return {
        name: annotation
        for name in SECTION_SWITCH_ENV
        for annotation in getattr(CollectorSettings.model_fields[name].annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, BaseModel)
    }


def _every_setting() -> set[str]:
    top = {name for name in CollectorSettings.model_fields if name not in SECTION_SWITCH_ENV}
    nested = {
        f"{section}.{name}" for section, model in _sections().items() for name in model.model_fields
    }
    return top | nested


def _documented_as(setting: str) -> str:
    section, _, name = setting.rpartition(".")
    return f"`[collector.{section}] {name}`" if section else f"`{setting}`"


# --- the guard: no setting is TOML-only by accident -----------------------------------------


def test_every_collector_setting_has_a_variable_or_a_reason_to_be_toml_only() -> None:
    settings = _every_setting()
    assert set(SETTING_ENV) | set(TOML_ONLY) == settings
    assert not set(SETTING_ENV) & set(TOML_ONLY)
    assert all(reason.strip() for reason in TOML_ONLY.values())


def test_every_variable_is_named_once_for_its_own_setting() -> None:
    variables = list(SETTING_ENV.values())
    assert len(set(variables)) == len(variables)
    assert all(variable.startswith("POSTMARKET_") for variable in variables)


def test_every_variable_naming_a_secret_names_its_file() -> None:
    assert all(variable.endswith("_FILE") for variable in SECRET_FILE_ENV.values())
    assert set(SECRET_FILE_ENV.values()) <= set(SETTING_ENV.values())


def test_hospital_it_has_a_row_for_every_variable_and_every_toml_only_setting() -> None:
    rows = [line for line in HOSPITAL_IT.read_text().splitlines() if line.startswith("| `")]
    for setting, variable in SETTING_ENV.items():
        named = _documented_as(setting)
        assert any(named in row and f"`{variable}`" in row for row in rows), variable
    for setting in TOML_ONLY:
        names = (f"`{setting}`", f"`[collector.{setting}]")  # a setting, or a table
        assert any(any(name in row for name in names) and "TOML only" in row for row in rows), (
            setting
        )


def test_every_variable_but_mllps_is_specified_here() -> None:
    assert set(MAPPINGS) == set(SETTING_ENV.values()) - set(MLLP_ENV.values())


# --- each variable overrides its setting, and only it -----------------------------------------


@pytest.mark.parametrize("variable", list(MAPPINGS))
def test_the_variable_overrides_its_toml_setting_and_only_it(site: Path, variable: str) -> None:
    value, expected = MAPPINGS[variable]
    setting = SETTING_OF[variable]
    from_file = _load(site, {})
    from_environment = _load(site, {variable: value})
    assert _value(from_file, setting) != expected
    assert _value(from_environment, setting) == expected
    assert _with(from_environment, setting, _value(from_file, setting)) == from_file


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_variable_leaves_the_toml_setting(site: Path, value: str) -> None:
    environment = dict.fromkeys(SETTING_ENV.values(), value)
    assert _load(site, environment) == _load(site, {})


def test_the_variables_alone_configure_a_collector(site: Path) -> None:
    environment = {variable: value for variable, (value, _) in MAPPINGS.items()}
    settings = load_settings(None, environ=environment)
    for variable, (_, expected) in MAPPINGS.items():
        assert _value(settings, SETTING_OF[variable]) == expected, variable


# --- a table is turned on by the file, or by its switch variable -----------------------------


SWITCHED_ON = {
    "inbox": {"POSTMARKET_INBOX_PATH": "/data/inbox"},
    "scp": {
        "POSTMARKET_INBOX_PATH": "/data/inbox",
        "POSTMARKET_SCP_PORT": "104",
        "POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES": "PACS1",
    },
    "stow_rs": {
        "POSTMARKET_INBOX_PATH": "/data/inbox",
        "POSTMARKET_STOW_PORT": "8104",
        "POSTMARKET_STOW_ALLOWED_PEERS": "10.20.0.15",
    },
}
"""Per table, its switch variable and what else it needs to be valid."""


@pytest.mark.parametrize("section", list(SECTION_SWITCH_ENV))
def test_the_switch_variable_turns_its_table_on(site: Path, section: str) -> None:
    (site / "collector.toml").write_text(SITE)
    assert SECTION_SWITCH_ENV[section] in SWITCHED_ON[section]
    assert getattr(_load(site, {}), section) is None
    assert getattr(_load(site, SWITCHED_ON[section]), section) is not None


@pytest.mark.parametrize(
    "variable",
    ["POSTMARKET_INBOX_MAX_DICOM_BYTES", "POSTMARKET_SCP_AE_TITLE", "POSTMARKET_STOW_HOST"],
)
def test_a_table_variable_alone_never_turns_its_table_on(site: Path, variable: str) -> None:
    (site / "collector.toml").write_text(SITE)
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {variable: "1"})
    message = str(refused.value)
    assert (
        message.startswith(f"{variable} is set but ")
        and " is off: configure [collector." in message
    )
    section = SETTING_OF[variable].partition(".")[0]
    assert SECTION_SWITCH_ENV[section] in message


def test_a_listener_turned_on_by_its_port_needs_the_inbox_variable(site: Path) -> None:
    (site / "collector.toml").write_text(SITE)
    environment = {"POSTMARKET_STOW_PORT": "8104", "POSTMARKET_STOW_ALLOWED_PEERS": "10.0.0.1"}
    with pytest.raises(CollectorConfigError, match="configure \\[collector.inbox\\]") as refused:
        _load(site, environment)
    assert "POSTMARKET_INBOX_PATH" in str(refused.value)


def test_an_scp_turned_on_without_its_ae_titles_names_their_variable(site: Path) -> None:
    (site / "collector.toml").write_text(SITE)
    environment = {"POSTMARKET_INBOX_PATH": "/data/inbox", "POSTMARKET_SCP_PORT": "104"}
    with pytest.raises(CollectorConfigError, match="POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES"):
        _load(site, environment)


def test_a_stow_rs_turned_on_without_a_guard_names_both_variables(site: Path) -> None:
    (site / "collector.toml").write_text(SITE)
    environment = {"POSTMARKET_INBOX_PATH": "/data/inbox", "POSTMARKET_STOW_PORT": "8104"}
    with pytest.raises(CollectorConfigError, match="allowed_peers, token_file or both") as refused:
        _load(site, environment)
    assert "POSTMARKET_STOW_ALLOWED_PEERS" in str(refused.value)
    assert "POSTMARKET_STOW_TOKEN_FILE" in str(refused.value)


# --- bad values: one line naming the variable ------------------------------------------------


BAD_VALUES = {
    "metrics port not a number": ("POSTMARKET_METRICS_PORT", "metrics", "valid integer"),
    "metrics port out of range": ("POSTMARKET_METRICS_PORT", "65536", "less than or equal"),
    "outbox bytes zero": ("POSTMARKET_OUTBOX_MAX_BYTES", "0", "greater than 0"),
    "warn fraction above one": ("POSTMARKET_OUTBOX_WARN_FRACTION", "80", "less than or equal"),
    "expiry with a unit": ("POSTMARKET_WAITING_EXPIRY_DAYS", "30d", "valid number"),
    "unknown mechanism": ("POSTMARKET_KAFKA_SASL_MECHANISM", "PLAIN", "SCRAM-SHA-512"),
    "processed action": ("POSTMARKET_INBOX_PROCESSED_ACTION", "archive", "'move' or 'delete'"),
    "poll zero": ("POSTMARKET_INBOX_POLL_SECONDS", "0", "greater than 0"),
    "dicom bytes with a unit": ("POSTMARKET_INBOX_MAX_DICOM_BYTES", "4GiB", "valid integer"),
    "scp port out of range": ("POSTMARKET_SCP_PORT", "70000", "less than or equal"),
    "ae title too long": ("POSTMARKET_SCP_AE_TITLE", "A" * 17, "at most 16"),
    "calling ae title too long": (
        "POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES",
        "PACS1," + "B" * 17,
        "at most 16",
    ),
    "no calling ae title": ("POSTMARKET_SCP_ALLOWED_CALLING_AE_TITLES", " , ", "lists no AE title"),
    "stow port not a number": ("POSTMARKET_STOW_PORT", "stow", "valid integer"),
    "stow peer not an address": (
        "POSTMARKET_STOW_ALLOWED_PEERS",
        "10.20.0.15,ai.hospital.local",
        "valid IPv4 or IPv6 network",
    ),
    "no stow peer": ("POSTMARKET_STOW_ALLOWED_PEERS", ",", "lists no address or network"),
    "request bytes zero": ("POSTMARKET_STOW_MAX_REQUEST_BYTES", "0", "greater than 0"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_refused_in_one_line_naming_its_variable(site: Path, case: str) -> None:
    variable, value, reason = BAD_VALUES[case]
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {variable: value})
    message = str(refused.value)
    assert variable in message and reason in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("present", "absent"),
    [
        ("POSTMARKET_METRICS_TLS_CERT_FILE", "POSTMARKET_METRICS_TLS_KEY_FILE"),
        ("POSTMARKET_METRICS_TLS_KEY_FILE", "POSTMARKET_METRICS_TLS_CERT_FILE"),
        ("POSTMARKET_METRICS_BASIC_AUTH_USER", "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE"),
        ("POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE", "POSTMARKET_METRICS_BASIC_AUTH_USER"),
    ],
)
def test_half_a_metrics_pair_names_both_variables(site: Path, present: str, absent: str) -> None:
    (site / "collector.toml").write_text(SITE)
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {present: MAPPINGS[present][0]})
    assert present in str(refused.value) and absent in str(refused.value)


def test_a_stow_rs_certificate_without_its_key_names_both_variables(site: Path) -> None:
    (site / "collector.toml").write_text(
        TOML_EVERYTHING.replace('tls_key_file = "toml-stow.key"\n', "")
    )
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {"POSTMARKET_STOW_TLS_CERT_FILE": "/run/tls/s.crt"})
    assert "POSTMARKET_STOW_TLS_CERT_FILE" in str(refused.value)
    assert "POSTMARKET_STOW_TLS_KEY_FILE" in str(refused.value)


# --- `collector check` reads what the variables name, and never echoes a secret --------------


def _env_only_site(site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A collector configured by the environment alone: /metrics and STOW-RS over TLS with
    basic auth and a token, an inbox and an outbox in the site's folder."""
    (site / "collector.toml").unlink()
    metrics_cert, metrics_key = self_signed_certificate(site, "metrics")
    stow_cert, stow_key = self_signed_certificate(site, "stow")
    password = site / "metrics.password"
    write_secret_file(password, b"metrics-password-canary-0123456789")
    token = site / "stow.token"
    write_secret_file(token, b"stow-token-canary-0123456789abcdef")
    files = {
        "POSTMARKET_METRICS_TLS_CERT_FILE": metrics_cert,
        "POSTMARKET_METRICS_TLS_KEY_FILE": metrics_key,
        "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE": password,
        "POSTMARKET_STOW_TLS_CERT_FILE": stow_cert,
        "POSTMARKET_STOW_TLS_KEY_FILE": stow_key,
        "POSTMARKET_STOW_TOKEN_FILE": token,
    }
    environment = {
        "POSTMARKET_SITE_ID": "site-a",
        "POSTMARKET_PSEUDONYM_KEY_FILE": str(site / "site.key"),
        "POSTMARKET_OUTBOX_PATH": str(site / "state" / "outbox.db"),
        "POSTMARKET_INBOX_PATH": str(site / "inbox"),
        "POSTMARKET_METRICS_BASIC_AUTH_USER": "prometheus",
        "POSTMARKET_STOW_PORT": "0",
        **{variable: str(path) for variable, path in files.items()},
    }
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    return files


def _check() -> Result:
    return CliRunner().invoke(app, ["collector", "check"])


def test_check_passes_a_collector_configured_by_the_environment_alone(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env_only_site(site, monkeypatch)
    result = _check()
    assert result.exit_code == 0, result.output
    assert "configuration ok: site site-a" in result.stderr


SECRET_VARIABLES = [
    "POSTMARKET_METRICS_TLS_KEY_FILE",
    "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE",
    "POSTMARKET_STOW_TLS_KEY_FILE",
]


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_file_others_can_read_is_named_with_its_variable(
    site: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    files = _env_only_site(site, monkeypatch)
    files[variable].chmod(0o644)
    result = _check()
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert f"({variable}): " in line and str(files[variable]) in line
    assert "accessible to other users" in line


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_in_its_file_variable_is_never_echoed(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    files = _env_only_site(site, monkeypatch)
    secret = files[variable].read_text()
    monkeypatch.setenv(variable, secret)
    result = _check()
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert variable in line and NOT_A_PATH in line
    for part in [secret.strip(), *(row for row in secret.splitlines() if len(row) >= 16)]:
        assert part not in result.output and part not in caplog.text


@pytest.mark.parametrize(
    "variable", ["POSTMARKET_METRICS_TLS_CERT_FILE", "POSTMARKET_STOW_TLS_CERT_FILE"]
)
def test_a_certificate_pasted_into_its_file_variable_is_not_printed(
    site: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    files = _env_only_site(site, monkeypatch)
    monkeypatch.setenv(variable, files[variable].read_text())
    result = _check()
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert variable in line and "BEGIN" not in line


def test_a_folder_set_by_its_variable_that_cannot_be_made_is_named_with_it(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env_only_site(site, monkeypatch)
    (site / "not-a-folder").write_text("a file where the folder should be")
    monkeypatch.setenv("POSTMARKET_STATE_PATH", str(site / "not-a-folder" / "cases.db"))
    result = _check()
    assert result.exit_code == 3, result.output
    assert f"state_path (POSTMARKET_STATE_PATH): {site / 'not-a-folder'} is not a folder" in (
        result.stderr
    )


def test_run_names_the_metrics_variables_when_their_port_is_taken(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env_only_site(site, monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("POSTMARKET_METRICS_PORT", str(taken.getsockname()[1]))
        result = CliRunner().invoke(app, ["collector", "run"])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "metrics_port (POSTMARKET_METRICS_PORT)" in line and "in use" in line
