"""``postmarket topics create``: the pipeline topics on a configured broker, idempotently."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from launcher.cli import app
from postmarket.topic_admin import admin_client, existing_partition_counts
from postmarket.topics import pipeline_topics

pytestmark = pytest.mark.integration


def _create(bootstrap: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["topics", "create", "--bootstrap", bootstrap, *args])


def test_creates_every_pipeline_topic_then_keeps_them(kafka_stack: Any) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    partitions = kafka_stack.settings.topic_partitions
    first = _create(bootstrap, "--partitions", str(partitions))
    assert first.exit_code == 0, first.output
    again = _create(bootstrap, "--partitions", str(partitions))
    assert again.exit_code == 0, again.output
    assert "created" not in again.output
    names = [spec.name for spec in pipeline_topics(partitions)]
    assert all(f"exists   {name}" in again.output for name in names)
    with admin_client(bootstrap) as admin:
        counts = existing_partition_counts(admin, names)
    assert counts == {spec.name: spec.partitions for spec in pipeline_topics(partitions)}


def test_a_topic_with_another_partition_count_fails_and_says_so(kafka_stack: Any) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    partitions = kafka_stack.settings.topic_partitions
    assert _create(bootstrap, "--partitions", str(partitions)).exit_code == 0
    result = _create(bootstrap, "--partitions", str(partitions + 1))
    assert result.exit_code == 1
    assert f"declares {partitions + 1}" in result.output
