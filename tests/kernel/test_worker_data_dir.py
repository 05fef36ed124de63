"""Where a worker keeps Faust's local data: a setting, under the stack home by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from postmarket.config import Settings


def test_worker_data_lives_under_the_home_by_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker_id="worker-a")
    assert settings.worker_data_path == tmp_path / "workers" / "worker-a"


def test_worker_data_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTMARKET_WORKER_DATA_DIR", str(tmp_path / "faust"))
    settings = Settings(home=tmp_path / "home", worker_id="worker-a")
    assert settings.worker_data_path == tmp_path / "faust" / "worker-a"
