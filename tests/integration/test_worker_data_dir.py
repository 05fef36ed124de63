"""A worker keeps Faust's local data in its configured directory, never in the current one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket.config import Settings
from tests.integration.pipeline_io import free_port

pytestmark = pytest.mark.integration


def test_a_worker_started_from_a_directory_writes_nothing_into_it(
    kafka_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-datadir-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": home,
        }
    )
    monkeypatch.chdir(cwd)  # the child worker inherits it

    with LocalWorker(settings, tmp_path / "worker.log"):
        pass

    assert sorted(path.name for path in cwd.iterdir()) == []
    assert settings.worker_data_path.is_dir()
