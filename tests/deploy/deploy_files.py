"""Readers shared by the deployment tests: the repository root, YAML documents, the CLI."""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from collectors.settings_environment import PSEUDONYM_KEY_ENV, SIGNING_KEY_ENV, SITE_ID_ENV
from postmarket.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
POSTMARKET = Path(sys.executable).with_name("postmarket")


def known_postmarket_variables() -> set[str]:
    """Every POSTMARKET_* variable something reads: Settings fields and the collector's."""
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    return fields | {SITE_ID_ENV, PSEUDONYM_KEY_ENV, SIGNING_KEY_ENV, "POSTMARKET_CONFIG"}


@functools.cache
def is_cli_command(words: tuple[str, ...]) -> bool:
    """True when ``postmarket WORDS... --help`` exits 0: the (sub)command exists."""
    result = subprocess.run(
        [str(POSTMARKET), *words, "--help"], capture_output=True, text=True, timeout=120
    )
    return result.returncode == 0


def subcommand_words(argv: list[str]) -> tuple[str, ...]:
    """The leading words of a postmarket command line that name its (sub)command."""
    words: list[str] = []
    for word in argv:
        if word.startswith("-"):
            break
        words.append(word)
    return tuple(words)


def command_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
