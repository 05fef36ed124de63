"""A worker of a test module's own: its own id (so its own consumer group and tables) and
metrics port, started in ``home`` and stopped when the ``with`` block ends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher.local_worker import LocalWorker
from postmarket.config import Settings
from tests.integration.pipeline_io import free_port, skip_backlog


def own_worker(
    base: Settings, home: Path, name: str, *, skip: Sequence[str] = (), **overrides: Any
) -> LocalWorker:
    """``base``'s worker as ``test-<name>-<random>``, with ``overrides``; its consumer group
    starts at the end of the ``skip`` topics (earlier tests' records would only slow it)."""
    update = {
        "worker_id": f"test-{name}-{uuid.uuid4().hex[:8]}",
        "worker_metrics_port": free_port(),
        "home": home,
        **overrides,
    }
    settings = base.model_copy(update=update)
    if skip:
        skip_backlog(settings.kafka_bootstrap, settings.worker_id, list(skip))
    return LocalWorker(settings, home / "worker.log")
