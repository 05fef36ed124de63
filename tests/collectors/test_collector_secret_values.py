"""A secret put where its file's path belongs is never echoed (issue 19).

``POSTMARKET_PSEUDONYM_KEY_FILE="$(cat site.key)"`` is an easy mistake: the variable then holds
the key itself. Every error about it names the variable and says the value is not a path;
no output, log line or error of ``collector check`` or ``collector run`` contains it.
"""

from __future__ import annotations

import base64
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from collectors.pseudonym import PseudonymKey, PseudonymKeyError
from collectors.settings import CollectorConfigError, load_settings
from launcher.cli import app
from postmarket.authenticity import SigningKey
from postmarket.secrets import (
    NOT_A_PATH,
    SecretFileError,
    looks_like_path,
    read_secret_file,
    secret_from_environment,
)

CT = str(get_testdata_file("CT_small.dcm", download=False))
SEEDED = random.Random(19)  # noqa: S311 - reproducible test secrets
HMAC_KEY = SEEDED.randbytes(48)
SITE_KEY_TEXT = base64.b64encode(HMAC_KEY).decode()  # as collector.example.toml makes it
SIGNING = SigningKey.from_seed(SEEDED.randbytes(32))
KAFKA_PASSWORD = base64.urlsafe_b64encode(SEEDED.randbytes(24)).decode()  # as token_urlsafe


def pem_of(key: SigningKey, folder: Path) -> str:
    key.write(folder / "written.pem")
    return (folder / "written.pem").read_text()


def secret_forms(value: str) -> Iterator[str]:
    """The value, and each line of it long enough to be recognisable (a PEM's body lines)."""
    yield value.strip()
    yield from (line for line in value.splitlines() if len(line) >= 16)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid site (key file, config); the environment names no collector setting."""
    for variable in list(os.environ):
        if variable.startswith("POSTMARKET_"):
            monkeypatch.delenv(variable)
    key = tmp_path / "site.key"
    key.write_bytes(SITE_KEY_TEXT.encode())
    key.chmod(0o600)
    (tmp_path / "collector.toml").write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        f'outbox_path = "{tmp_path / "outbox.db"}"\n'
    )
    return tmp_path


def sasl(environment: dict[str, str]) -> dict[str, str]:
    return environment | {
        "POSTMARKET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "POSTMARKET_KAFKA_USERNAME": "site-site-a",
    }


CASES = {
    "site key as base64": (
        {"POSTMARKET_PSEUDONYM_KEY_FILE": SITE_KEY_TEXT},
        "POSTMARKET_PSEUDONYM_KEY_FILE",
    ),
    "site key as hex": (
        {"POSTMARKET_PSEUDONYM_KEY_FILE": HMAC_KEY.hex()},
        "POSTMARKET_PSEUDONYM_KEY_FILE",
    ),
    "raw site key bytes": (
        {"POSTMARKET_PSEUDONYM_KEY_FILE": os.fsdecode(HMAC_KEY.replace(b"\x00", b"\x01"))},
        "POSTMARKET_PSEUDONYM_KEY_FILE",
    ),
    "signing key PEM": ({"POSTMARKET_SIGNING_KEY_FILE": "<pem>"}, "POSTMARKET_SIGNING_KEY_FILE"),
    "Kafka password": (
        sasl({"POSTMARKET_KAFKA_PASSWORD_FILE": KAFKA_PASSWORD}),
        "POSTMARKET_KAFKA_PASSWORD_FILE",
    ),
    "old site key variable": (
        {"POSTMARKET_SITE_KEY": SITE_KEY_TEXT},
        "POSTMARKET_PSEUDONYM_KEY_FILE",
    ),
    "old signing key variable": (
        {"POSTMARKET_SIGNING_KEY": "<pem>"},
        "POSTMARKET_SIGNING_KEY_FILE",
    ),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_secret_in_a_path_variable_is_never_echoed(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
    command: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = pem_of(SIGNING, site)
    environment, named_variable = CASES[case]
    for variable, value in environment.items():
        monkeypatch.setenv(variable, pem if value == "<pem>" else value)
    planted = [pem if value == "<pem>" else value for value in environment.values()]
    arguments = [CT] if command == "check" else []
    result = CliRunner().invoke(
        app, ["collector", command, *arguments, "--config", str(site / "collector.toml")]
    )
    assert result.exit_code == 3, result.output
    assert named_variable in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    for value in planted:
        for form in secret_forms(value):
            if len(form) >= 16:  # the protocol and user name are not secrets
                assert form not in result.output, case
                assert form not in caplog.text, case


STOW_TOKENS = {
    "base64": base64.b64encode(SEEDED.randbytes(32)).decode(),  # as collector.example.toml
    "urlsafe": base64.urlsafe_b64encode(SEEDED.randbytes(32)).decode().rstrip("="),
    "hex": SEEDED.randbytes(32).hex(),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("form", list(STOW_TOKENS))
def test_a_stow_rs_token_in_its_file_variable_is_never_echoed(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    form: str,
    command: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = site / "collector.toml"
    (site / "inbox").mkdir()
    config.write_text(
        config.read_text() + '[collector.inbox]\npath = "inbox"\n'
        '[collector.stow_rs]\nport = 0\nallowed_peers = ["127.0.0.1"]\n'
    )
    token = STOW_TOKENS[form]
    monkeypatch.setenv("POSTMARKET_STOW_TOKEN_FILE", token)
    arguments = [CT] if command == "check" else []
    result = CliRunner().invoke(app, ["collector", command, *arguments, "--config", str(config)])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert "POSTMARKET_STOW_TOKEN_FILE" in line and NOT_A_PATH in line
    assert token not in result.output and token not in caplog.text


@pytest.mark.parametrize(
    "variable",
    ["POSTMARKET_PSEUDONYM_KEY_FILE", "POSTMARKET_SIGNING_KEY_FILE"],
    ids=["site", "signing"],
)
def test_a_secret_that_is_not_a_path_is_said_to_look_like_the_secret(
    site: Path, variable: str
) -> None:
    value = SITE_KEY_TEXT if "SITE" in variable else pem_of(SIGNING, site)
    environment = {
        "POSTMARKET_SITE_ID": "site-a",
        "POSTMARKET_PSEUDONYM_KEY_FILE": str(site / "site.key"),
    }
    settings = load_settings(environ=environment | {variable: value})
    with pytest.raises(ValueError, match="looks like the secret itself") as refused:
        settings.pseudonym_key()
        settings.signing_key()
    assert value.strip() not in str(refused.value) and variable in str(refused.value)


@pytest.mark.parametrize(
    "secret", [SITE_KEY_TEXT, HMAC_KEY.hex(), KAFKA_PASSWORD], ids=["base64", "hex", "urlsafe"]
)
def test_a_secret_in_the_config_files_path_setting_is_never_echoed(site: Path, secret: str) -> None:
    folder = site / "etc.postmarket"  # the file's folder is prefixed, with a dot in it
    folder.mkdir()
    config = folder / "collector.toml"
    config.write_text(f'[collector]\nsite_id = "site-a"\npseudonym_key_file = "{secret}"\n')
    result = CliRunner().invoke(app, ["collector", "check", "--config", str(config)])
    assert result.exit_code == 3
    assert NOT_A_PATH in result.stderr and "pseudonym_key_file" in result.stderr
    assert secret not in result.output


def test_an_old_variable_is_refused_naming_the_new_one_not_its_value(site: Path) -> None:
    environment = {"POSTMARKET_SITE_ID": "site-a", "POSTMARKET_SIGNING_KEY": "/etc/pms/signing.pem"}
    with pytest.raises(CollectorConfigError) as refused:
        load_settings(site / "collector.toml", environ=environment)
    message = str(refused.value)
    assert "POSTMARKET_SIGNING_KEY_FILE" in message and "/etc/pms/signing.pem" not in message


def test_a_missing_key_file_is_named_only_when_the_value_is_a_path(site: Path) -> None:
    missing = site / "keys" / "site.key"
    with pytest.raises(PseudonymKeyError, match=f"site key file {missing} does not exist"):
        PseudonymKey.from_file(missing)
    with pytest.raises(PseudonymKeyError) as secret:
        PseudonymKey.from_file(Path(SITE_KEY_TEXT))
    assert (
        str(secret.value)
        == f"site key file: {NOT_A_PATH}; put it in a 0600 file and name that file"
    )


def test_the_environment_readers_name_their_variable_not_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTMARKET_PSEUDONYM_KEY_FILE", SITE_KEY_TEXT)
    with pytest.raises(PseudonymKeyError) as pseudonym_key:
        PseudonymKey.from_environment()
    monkeypatch.setenv("POSTMARKET_KAFKA_PASSWORD_FILE", KAFKA_PASSWORD)
    with pytest.raises(SecretFileError) as password:
        secret_from_environment("POSTMARKET_KAFKA_PASSWORD_FILE", "Kafka password")
    assert str(pseudonym_key.value).startswith("POSTMARKET_PSEUDONYM_KEY_FILE: ")
    assert str(password.value).startswith("POSTMARKET_KAFKA_PASSWORD_FILE: ")
    assert SITE_KEY_TEXT not in str(pseudonym_key.value) and KAFKA_PASSWORD not in str(
        password.value
    )


@given(key=st.binary(min_size=24, max_size=96))
def test_key_material_in_hex_or_base64url_is_never_shown(key: bytes) -> None:
    for encoded in (
        key.hex(),
        key.hex().upper(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    ):
        assert_refused_unshown(encoded)


@given(key=st.binary(min_size=1, max_size=96))
def test_raw_key_bytes_that_are_not_printable_are_never_shown(key: bytes) -> None:
    value = os.fsdecode(key.replace(b"\x00", b""))  # an environment variable cannot hold NUL
    if not value.isprintable():
        assert_refused_unshown(value)


@pytest.mark.parametrize("seed", range(200))
def test_random_keys_in_standard_base64_are_never_shown(seed: int) -> None:
    key = random.Random(seed).randbytes(24 + seed % 40)  # noqa: S311 - reproducible
    assert_refused_unshown(base64.b64encode(key).decode())


def assert_refused_unshown(value: str) -> None:
    with pytest.raises(SecretFileError) as refused:
        read_secret_file(Path(value), "site key")
    assert NOT_A_PATH in str(refused.value) and value not in str(refused.value)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/postmarket/site.key",
        "site.key",
        "/run/secrets/site_key",
        "/run/postmarket/key/signing.pem",
        "/var/lib/postmarket-collector/kafka.password",
        "C:\\ProgramData\\postmarket\\site.key",
    ],
)
def test_a_plausible_path_is_shown(path: str) -> None:
    assert looks_like_path(path)
