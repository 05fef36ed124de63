"""The MLLP listener is configured by the environment as the other collector settings are
(issue 19): each ``POSTMARKET_MLLP_...`` variable overrides its setting of the TOML file, a
bad value is refused naming its variable, and the TLS key is named by path, never shown."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from collectors.mllp_listener import MllpEndpoint
from collectors.settings import CollectorConfigError, CollectorSettings, load_settings
from collectors.settings_environment import MLLP_ENV
from launcher.cli import app
from postmarket.secrets import NOT_A_PATH
from tests.tls_certificates import self_signed_certificate

CT = str(get_testdata_file("CT_small.dcm", download=False))
HOSPITAL_IT = Path(__file__).parents[2] / "docs" / "hospital-it.md"
HL7_MAPPING = '[collector.followups.hl7]\nlabel_values = { "M-80003" = "positive" }\n'
TOML_MLLP = (
    'mllp_host = "127.0.0.1"\n'
    "mllp_port = 2575\n"
    'mllp_allowed_peers = ["10.9.9.9"]\n'
    "mllp_max_message_bytes = 4096\n"
    "mllp_max_connections = 2\n"
    "mllp_idle_timeout_s = 60\n"
    'mllp_tls_cert_file = "toml.crt"\n'
    'mllp_tls_key_file = "toml.key"\n'
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site whose collector.toml sets every MLLP setting; the environment sets none."""
    for variable in list(os.environ):
        if variable.startswith("POSTMARKET_"):
            monkeypatch.delenv(variable)
    key = tmp_path / "site.key"
    key.write_bytes(b"mllp-environment-test-site-secret-0123456789")
    key.chmod(0o600)
    (tmp_path / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        f'outbox_path = "{tmp_path / "outbox.db"}"\n' + TOML_MLLP + HL7_MAPPING
    )
    return tmp_path


def _load(site: Path, environment: dict[str, str]) -> CollectorSettings:
    return load_settings(site / "collector.toml", environ=environment)


MAPPINGS: dict[str, tuple[str, Any]] = {
    "POSTMARKET_MLLP_HOST": ("10.20.0.5", "10.20.0.5"),
    "POSTMARKET_MLLP_PORT": ("2576", 2576),
    "POSTMARKET_MLLP_ALLOWED_PEERS": (
        "10.20.0.21, 10.20.1.0/24 fd00::7",
        ("10.20.0.21/32", "10.20.1.0/24", "fd00::7/128"),
    ),
    "POSTMARKET_MLLP_MAX_MESSAGE_BYTES": ("1048576", 1048576),
    "POSTMARKET_MLLP_MAX_CONNECTIONS": ("4", 4),
    "POSTMARKET_MLLP_IDLE_TIMEOUT_S": ("90.5", 90.5),
    "POSTMARKET_MLLP_TLS_CERT_FILE": ("/run/secrets/mllp.crt", Path("/run/secrets/mllp.crt")),
    "POSTMARKET_MLLP_TLS_KEY_FILE": ("/run/secrets/mllp.key", Path("/run/secrets/mllp.key")),
}


def test_every_mllp_setting_has_its_variable() -> None:
    settings = {name for name in CollectorSettings.model_fields if name.startswith("mllp_")}
    assert set(MLLP_ENV) == settings
    assert set(MLLP_ENV.values()) == set(MAPPINGS)


@pytest.mark.parametrize("variable", list(MAPPINGS))
def test_the_variable_overrides_its_toml_setting_and_only_it(site: Path, variable: str) -> None:
    value, expected = MAPPINGS[variable]
    from_file = _load(site, {})
    from_environment = _load(site, {variable: value})
    setting = next(name for name, named in MLLP_ENV.items() if named == variable)
    assert getattr(from_file, setting) != expected
    assert getattr(from_environment, setting) == expected
    assert from_environment.model_copy(update={setting: getattr(from_file, setting)}) == from_file


def test_the_variables_alone_configure_the_listener(site: Path) -> None:
    (site / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n' + HL7_MAPPING
    )
    environment = {variable: value for variable, (value, _) in MAPPINGS.items()}
    endpoint = MllpEndpoint.from_settings(_load(site, environment))
    assert (endpoint.host, endpoint.port) == ("10.20.0.5", 2576)
    assert [str(network) for network in endpoint.allowed_peers] == list(
        MAPPINGS["POSTMARKET_MLLP_ALLOWED_PEERS"][1]
    )
    assert (endpoint.max_message_bytes, endpoint.max_connections) == (1048576, 4)
    assert endpoint.idle_timeout_s == 90.5
    assert (endpoint.tls_cert_file, endpoint.tls_key_file) == (
        Path("/run/secrets/mllp.crt"),
        Path("/run/secrets/mllp.key"),
    )


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_variable_leaves_the_toml_setting(site: Path, value: str) -> None:
    environment = dict.fromkeys(MLLP_ENV.values(), value)
    assert _load(site, environment) == _load(site, {})


def test_without_toml_or_variables_the_listener_stays_off_and_loopback_only(site: Path) -> None:
    (site / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
    )
    settings = _load(site, {})
    assert settings.mllp_port is None and settings.mllp_host == "127.0.0.1"
    assert settings.mllp_allowed_peers == ("127.0.0.1", "::1")


BAD_VALUES = {
    "port not a number": ("POSTMARKET_MLLP_PORT", "hl7", "valid integer"),
    "port out of range": ("POSTMARKET_MLLP_PORT", "70000", "less than or equal to 65535"),
    "peer not an address": (
        "POSTMARKET_MLLP_ALLOWED_PEERS",
        "10.20.0.21,mirth.hospital.local",
        "not an IP address or network",
    ),
    "no peer": ("POSTMARKET_MLLP_ALLOWED_PEERS", " , ", "lists no address or network"),
    "zero message bytes": ("POSTMARKET_MLLP_MAX_MESSAGE_BYTES", "0", "greater than 0"),
    "message bytes with a unit": ("POSTMARKET_MLLP_MAX_MESSAGE_BYTES", "8MiB", "valid integer"),
    "too many connections": ("POSTMARKET_MLLP_MAX_CONNECTIONS", "5000", "less than or equal"),
    "timeout not a number": ("POSTMARKET_MLLP_IDLE_TIMEOUT_S", "5m", "valid number"),
    "timeout zero": ("POSTMARKET_MLLP_IDLE_TIMEOUT_S", "0", "greater than 0"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_refused_in_one_line_naming_its_variable(site: Path, case: str) -> None:
    variable, value, reason = BAD_VALUES[case]
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {variable: value})
    message = str(refused.value)
    assert variable in message and reason in message
    assert "\n" not in message


def test_the_port_variable_without_an_hl7_mapping_names_the_variable(site: Path) -> None:
    (site / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
    )
    with pytest.raises(CollectorConfigError, match=r"POSTMARKET_MLLP_PORT\) receives HL7"):
        _load(site, {"POSTMARKET_MLLP_PORT": "2575"})


def test_a_tls_certificate_without_its_key_names_both_variables(site: Path) -> None:
    (site / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
    )
    with pytest.raises(CollectorConfigError) as refused:
        _load(site, {"POSTMARKET_MLLP_TLS_CERT_FILE": "/run/secrets/mllp.crt"})
    assert "POSTMARKET_MLLP_TLS_CERT_FILE" in str(refused.value)
    assert "POSTMARKET_MLLP_TLS_KEY_FILE" in str(refused.value)


def _tls_site(site: Path) -> tuple[Path, Path]:
    """The site's TOML with the listener on a free port and a real certificate and key."""
    cert_file, key_file = self_signed_certificate(site, "mllp")
    (site / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        f'outbox_path = "{site / "outbox.db"}"\nmllp_port = 0\n'
        f'mllp_tls_cert_file = "{cert_file}"\nmllp_tls_key_file = "{key_file}"\n' + HL7_MAPPING
    )
    return cert_file, key_file


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_tls_key_in_its_file_variable_is_never_echoed(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    command: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, key_file = _tls_site(site)
    pem = key_file.read_text()
    monkeypatch.setenv("POSTMARKET_MLLP_TLS_KEY_FILE", pem)
    arguments = [CT] if command == "check" else []
    config = str(site / "collector.toml")
    result = CliRunner().invoke(app, ["collector", command, *arguments, "--config", config])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert "POSTMARKET_MLLP_TLS_KEY_FILE" in line and NOT_A_PATH in line
    for part in [pem.strip(), *(row for row in pem.splitlines() if len(row) >= 16)]:
        assert part not in result.output and part not in caplog.text


def test_a_tls_key_file_others_can_read_is_named_with_its_variable(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key_file = _tls_site(site)
    readable = site / "readable.key"
    readable.write_bytes(key_file.read_bytes())
    readable.chmod(0o644)
    monkeypatch.setenv("POSTMARKET_MLLP_TLS_KEY_FILE", str(readable))
    config = str(site / "collector.toml")
    result = CliRunner().invoke(app, ["collector", "check", "--config", config])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"mllp_tls_key_file (POSTMARKET_MLLP_TLS_KEY_FILE): MLLP TLS key file {readable}" in line
    assert "accessible to other users" in line


def test_a_certificate_pasted_into_its_file_variable_is_not_printed(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, _ = _tls_site(site)
    monkeypatch.setenv("POSTMARKET_MLLP_TLS_CERT_FILE", cert_file.read_text())
    config = str(site / "collector.toml")
    result = CliRunner().invoke(app, ["collector", "check", "--config", config])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "POSTMARKET_MLLP_TLS_CERT_FILE" in line and "BEGIN" not in line


def test_hospital_it_documents_every_mllp_variable_with_its_setting() -> None:
    rows = [line for line in HOSPITAL_IT.read_text().splitlines() if line.startswith("| `")]
    for setting, variable in MLLP_ENV.items():
        assert any(f"`{setting}`" in row and f"`{variable}`" in row for row in rows), variable
