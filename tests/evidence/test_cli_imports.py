"""The light path of ``postmarket`` imports nothing heavy.

Importing scipy, pandas and matplotlib cost every evidence command about 3 s of CPU. Each
test runs a fresh interpreter and reads ``sys.modules``: what a command imported, not how
long it took, so the check does not depend on the machine's load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.store import EvidenceStore

HEAVY = ("scipy", "pandas", "matplotlib")
MIGRATIONS = ("alembic",)
"""Loaded only by commands that write: a command that only reads never migrates."""

RUN_AND_LIST_IMPORTS = """
import json, sys
from launcher.cli import app
try:
    app(sys.argv[1:], prog_name="postmarket")
except SystemExit as leaving:
    assert not leaving.code, leaving.code
print(json.dumps(sorted(sys.modules)))
"""


def imported_modules(*args: str) -> set[str]:
    """Every module imported by running ``postmarket ARGS`` in a fresh interpreter."""
    finished = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", RUN_AND_LIST_IMPORTS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(finished.stdout.strip().splitlines()[-1]))


def imported_by(*args: str) -> set[str]:
    """Top-level packages imported by running ``postmarket ARGS``."""
    return {name.split(".")[0] for name in imported_modules(*args)}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    with EvidenceStore(url) as store:
        store.add_device("dr-screen", tasks=["referable_dr"], actor="qa")
    return url


def test_help_imports_nothing_heavy() -> None:
    assert imported_by("--help") & {*HEAVY, "sqlalchemy"} == set()


def test_registry_list_imports_neither_scipy_pandas_nor_matplotlib(store_url: str) -> None:
    assert imported_by("registry", "list", "--url", store_url) & set(HEAVY) == set()


@pytest.mark.parametrize("command", [["registry", "list"], ["alerts", "list"], ["audit", "verify"]])
def test_a_command_that_only_reads_does_not_load_migrations(
    command: list[str], store_url: str
) -> None:
    assert imported_by(*command, "--url", store_url) & {*HEAVY, *MIGRATIONS} == set()


def test_help_does_not_load_the_stack_commands() -> None:
    assert "launcher.stack.cli" not in imported_modules("--help")


def test_the_stack_group_is_listed_with_its_own_help() -> None:
    from launcher.cli import STACK_HELP
    from launcher.stack.cli import stack_app

    assert stack_app.info.help == STACK_HELP
