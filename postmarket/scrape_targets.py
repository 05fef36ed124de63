"""Announcing a /metrics endpoint to Prometheus through file-based service discovery.

A process that serves /metrics writes one small JSON file (``file_sd_configs``) into a
directory its Prometheus watches; Prometheus picks it up without a reload. The directory is
configuration: a hospital's Prometheus, a Kubernetes volume, or a local stack's, whose
layout :func:`local_stack_targets_dir` gives (the stack writes its config from it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

WORKER_JOB = "postmarket-worker"
COLLECTOR_JOB = "postmarket-collector"
EVIDENCE_JOB = "postmarket-evidence"
PIPELINE_JOBS = (WORKER_JOB, COLLECTOR_JOB, EVIDENCE_JOB)
"""The scrape jobs of the pipeline's own processes (dashboards and rules select by job)."""


def local_stack_targets_dir(home: Path, job: str) -> Path:
    """Where a local stack's Prometheus (``postmarket stack up``) reads ``job``'s targets."""
    return home / "prometheus" / "targets" / job


def target_file_name(address: str) -> str:
    """A file name for a target address.

    >>> target_file_name("127.0.0.1:9464")
    '127.0.0.1_9464.json'
    """
    return re.sub(r"[^A-Za-z0-9.-]", "_", address) + ".json"


def render_target_file(address: str, labels: Mapping[str, str] | None = None) -> str:
    """The file_sd JSON for one target."""
    return json.dumps([{"targets": [address], "labels": dict(labels or {})}], indent=2) + "\n"


def announce_scrape_target(
    directory: Path, address: str, labels: Mapping[str, str] | None = None
) -> Path:
    """Announce a ``host:port`` serving /metrics in ``directory``; return the file.

    The file is replaced atomically, so Prometheus never reads half of it; announcing the
    same address again overwrites it.
    """
    if not re.fullmatch(r"[^\s/]+:\d{1,5}", address):
        raise ValueError(f"scrape target must be host:port, got {address!r}")
    target = directory / target_file_name(address)
    atomic_write_text(target, render_target_file(address, labels))
    return target


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot-prefixed temporary name never matches a reader's glob such as *.json.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
