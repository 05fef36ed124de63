"""collector.toml for ``collector run``: the shipped example loads, paths are relative to
the file, and inconsistent settings are refused with the setting named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from collectors.settings import CollectorConfigError, load_settings

EXAMPLE = Path(__file__).parents[2] / "collectors" / "collector.example.toml"


def test_the_example_configuration_loads_with_paths_beside_it(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    shutil.copy(EXAMPLE, config)
    settings = load_settings(config, environ={})
    assert settings.site_id == "site-a"
    assert settings.inbox is not None and settings.inbox.path == tmp_path / "inbox"
    assert settings.inbox.rejected_dir == tmp_path / "rejected"
    assert settings.outbox_path == tmp_path / "state" / "outbox.db"
    assert settings.case_index_path == tmp_path / "state" / "outbox-cases.db"
    assert settings.scp is not None and "PACS1" in settings.scp.allowed_calling_ae_titles
    csv = settings.followups.csv
    assert csv is not None and csv.label_values["no malignancy"] == "negative"
    assert settings.ai_sr is not None and settings.ai_sr.score_concept == "DCM|122157"


def _config(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "collector.toml"
    config.write_text('[collector]\nsite_id = "s"\npseudonym_key_file = "k"\n' + body)
    return config


def test_scp_without_an_inbox_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, '[collector.scp]\nallowed_calling_ae_titles = ["PACS"]\n')
    with pytest.raises(CollectorConfigError, match="configure \\[collector.inbox\\]"):
        load_settings(config, environ={})


def test_scp_needs_an_allow_list(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[collector.inbox]\npath = "in"\n[collector.scp]\nallowed_calling_ae_titles = []\n',
    )
    with pytest.raises(CollectorConfigError, match="scp.allowed_calling_ae_titles"):
        load_settings(config, environ={})


def test_unknown_timezone_in_a_mapping_is_refused(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "[collector.followups.hl7]\n"
        'label_values = { "POS" = "positive" }\ntimezone = "Mars/Olympus"\n',
    )
    with pytest.raises(CollectorConfigError, match="Mars/Olympus"):
        load_settings(config, environ={})


def test_a_label_outside_positive_negative_is_refused(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "[collector.followups.csv]\n"
        'identifier_column = "a"\nlabel_column = "b"\ndate_column = "c"\nsource = "pathology"\n'
        'label_values = { "x" = "probably" }\n',
    )
    with pytest.raises(CollectorConfigError, match="followups.csv.label_values"):
        load_settings(config, environ={})
