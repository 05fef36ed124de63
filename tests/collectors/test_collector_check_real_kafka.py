"""``postmarket collector check --kafka`` connects as ``run`` will, to the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher.cli import app
from launcher.stack import manager

pytestmark = [pytest.mark.integration]


def test_check_connects_to_the_broker_and_sees_the_input_topics(
    kafka_stack: manager.UpResult, tmp_path: Path
) -> None:
    key = tmp_path / "site.key"
    key.write_bytes(b"check-kafka-site-secret-0123456789abcdef")
    key.chmod(0o600)
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        f'kafka_bootstrap = "{kafka_stack.settings.kafka_bootstrap}"\n'
    )
    result = CliRunner().invoke(app, ["collector", "check", "--kafka", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "connected, input topics visible" in result.stderr
