"""The pre-commit hooks run what `make lint` runs: every file a hook names exists (a hook
naming a moved test passes nothing and fails every commit that touches the contracts)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _entries() -> list[str]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    return [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]


def test_every_path_a_hook_names_exists() -> None:
    named = [
        word
        for entry in _entries()
        for word in shlex.split(entry)
        if re.match(r"^\.?[\w.-]+/", word)  # a relative path: .venv/bin/ruff, tests/...
    ]
    assert named, "no hook names a path: the parsing is wrong"
    missing = [path for path in named if not (ROOT / path).exists()]
    assert missing == []
