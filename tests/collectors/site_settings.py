"""A site's collector settings over a temporary directory, for tests that run a Collector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collectors.settings import CollectorSettings
from launcher.stack.processes import free_port


def site_settings(root: Path, **overrides: Any) -> CollectorSettings:
    """Settings of site-a: its key file (mode 0600), outbox and case index under ``root``,
    /metrics on a free loopback port; ``overrides`` set any other setting."""
    key = root / "site.key"
    key.write_bytes(b"collector-test-site-secret-0123456789abcdef")
    key.chmod(0o600)
    fields: dict[str, Any] = {
        "site_id": "site-a",
        "pseudonym_key_file": key,
        "outbox_path": root / "outbox.db",
        "metrics_port": free_port(),
    }
    return CollectorSettings(**(fields | overrides))
