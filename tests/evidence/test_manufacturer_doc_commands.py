"""docs/manufacturer.md's ``postmarket registry`` and ``alerts`` examples work when pasted.

Every such command of the page's console blocks runs, in the page's order, as a user would
run it: the real ``postmarket`` in a fresh directory, so it finds its default store (a new
SQLite file under ./.postmarket) and nothing is substituted. A non-zero exit or a traceback
fails. Commands that talk to Kafka run only against the real broker (the integration
variant); an example that names an alert with a placeholder cannot run on a fresh store.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fresh_shell import fresh_shell_environment

DOC = Path(__file__).resolve().parents[2] / "docs" / "manufacturer.md"
GROUPS = ("registry", "alerts")
NEEDS_A_BROKER = {("registry", "publish"), ("alerts", "rebaseline")}
PLACEHOLDERS = ("ALERT_ID",)
"""Words the page writes for a value only a running pipeline has."""
CONSOLE_BLOCK = re.compile(r"^[ \t]*```console\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def doc_commands(markdown: str) -> list[list[str]]:
    """The page's ``postmarket registry|alerts`` commands, in order, each as its argv:
    continuation lines joined, comments dropped."""
    commands: list[list[str]] = []
    for block in CONSOLE_BLOCK.findall(markdown):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["postmarket"] and argv[1:2] and argv[1] in GROUPS:
                commands.append(argv)
    return commands


def runnable(argv: list[str], broker: bool) -> bool:
    if any(word in PLACEHOLDERS for word in argv):
        return False
    return broker or tuple(argv[1:3]) not in NEEDS_A_BROKER


def paste(argv: list[str], directory: Path, environment: dict[str, str]) -> None:
    """Run ``argv`` as pasted into a shell in ``directory``; fail on an error or traceback."""
    done = subprocess.run(  # noqa: S603 - the page's own commands, run by our interpreter
        [sys.executable, "-m", "postmarket", *argv[1:]],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shown = shlex.join(argv)
    assert "Traceback" not in done.stderr + done.stdout, f"{shown}\n{done.stderr}"
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{done.stderr}"


def test_the_page_has_registry_and_alerts_examples_to_run() -> None:
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    run = {tuple(argv[1:3]) for argv in commands if runnable(argv, broker=False)}
    assert {("registry", "add-device"), ("registry", "set-status"), ("alerts", "list")} <= run
    assert {tuple(argv[1:3]) for argv in commands} >= NEEDS_A_BROKER


@pytest.mark.parametrize(
    "broker", [False, pytest.param(True, marks=pytest.mark.integration, id="kafka")]
)
def test_the_registry_and_alerts_examples_run_as_pasted(
    broker: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    environment = fresh_shell_environment()
    if broker:
        stack: Any = request.getfixturevalue("kafka_stack")
        environment["POSTMARKET_KAFKA_BOOTSTRAP"] = stack.settings.kafka_bootstrap
    for argv in doc_commands(DOC.read_text(encoding="utf-8")):
        if runnable(argv, broker):
            paste(argv, tmp_path, environment)
    assert (tmp_path / ".postmarket" / "evidence.db").is_file()
