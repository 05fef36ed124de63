"""The pseudonym key's earlier names (``site_key_file``, ``POSTMARKET_SITE_KEY_FILE``) still
configure a collector, with a warning naming the new one: "site key" now means only the
signing key a site registers. Both names at once are refused, naming both."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from collectors.pseudonym import case_pseudonym
from collectors.settings import CollectorConfigError, load_settings
from postmarket.secrets import write_secret_file

SECRET = b"deprecated-names-test-site-secret-0123456789"


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("POSTMARKET_PSEUDONYM_KEY_FILE", "POSTMARKET_SITE_KEY_FILE"):
        monkeypatch.delenv(variable, raising=False)
    path = tmp_path / "site.key"
    write_secret_file(path, SECRET)
    return path


def _config(tmp_path: Path, setting: str | None) -> Path:
    text = '[collector]\nsite_id = "site-a"\n'
    if setting is not None:
        text += f'{setting} = "site.key"\n'
    config = tmp_path / "collector.toml"
    config.write_text(text)
    return config


def test_the_old_toml_name_configures_the_key_with_a_warning(
    tmp_path: Path, key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = load_settings(_config(tmp_path, "site_key_file"), environ={})
    assert settings.pseudonym_key_file == key  # resolved against the file's folder, as before
    new = load_settings(_config(tmp_path, "pseudonym_key_file"), environ={})
    study = "1.2.826.0.1.3680043.8.498.1"
    assert case_pseudonym(settings.pseudonym_key(), study) == case_pseudonym(
        new.pseudonym_key(), study
    )
    assert "site_key_file is deprecated: rename it pseudonym_key_file" in caplog.text


def test_the_old_variable_configures_the_key_with_a_warning(
    tmp_path: Path, key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = load_settings(
            _config(tmp_path, None), environ={"POSTMARKET_SITE_KEY_FILE": str(key)}
        )
    assert settings.pseudonym_key_file == key
    assert "POSTMARKET_SITE_KEY_FILE is deprecated: set POSTMARKET_PSEUDONYM_KEY_FILE" in (
        caplog.text
    )


def test_the_new_names_warn_about_nothing(
    tmp_path: Path, key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        load_settings(_config(tmp_path, "pseudonym_key_file"), environ={})
        load_settings(_config(tmp_path, None), environ={"POSTMARKET_PSEUDONYM_KEY_FILE": str(key)})
    assert "deprecated" not in caplog.text


def test_both_toml_names_are_refused_naming_both(tmp_path: Path, key: Path) -> None:
    config = _config(tmp_path, "site_key_file")
    config.write_text(config.read_text() + 'pseudonym_key_file = "site.key"\n')
    with pytest.raises(CollectorConfigError, match="both site_key_file and pseudonym_key_file"):
        load_settings(config, environ={})


def test_both_variables_are_refused_naming_both(tmp_path: Path, key: Path) -> None:
    environ = {"POSTMARKET_SITE_KEY_FILE": str(key), "POSTMARKET_PSEUDONYM_KEY_FILE": str(key)}
    with pytest.raises(CollectorConfigError) as refused:
        load_settings(_config(tmp_path, None), environ=environ)
    assert str(refused.value) == (
        "both POSTMARKET_SITE_KEY_FILE and POSTMARKET_PSEUDONYM_KEY_FILE are set: "
        "unset POSTMARKET_SITE_KEY_FILE"
    )


def test_the_old_variable_overrides_the_files_new_name_as_the_new_variable_would(
    tmp_path: Path, key: Path
) -> None:
    other = tmp_path / "other.key"
    write_secret_file(other, SECRET[::-1])
    settings = load_settings(
        _config(tmp_path, "pseudonym_key_file"), environ={"POSTMARKET_SITE_KEY_FILE": str(other)}
    )
    assert settings.pseudonym_key_file == other
