"""The worker's Faust app, as configured from Settings."""

from __future__ import annotations

from pathlib import Path

from postmarket.config import Settings
from streams.app import create_app


def test_the_faust_app_keeps_its_data_in_the_worker_data_path(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker_id="worker-a")
    assert create_app(settings).conf.datadir == settings.worker_data_path
