"""No traceback reaches a user: every ``postmarket`` command, however it is called.

The command tree is walked, so a new command is covered without editing this file: each
answers ``--help``, and each evidence-store command (registry, alerts, audit, evidence,
report) is called with missing, malformed and hostile arguments. An uncaught exception is
what a user would see as a traceback; CliRunner reports it as ``result.exception``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fresh_shell import fresh_shell_environment
from kafka.errors import KafkaTimeoutError
from typer.testing import CliRunner, Result

from evidence.sink import EvidenceSink
from evidence.store import EvidenceStore
from launcher.cli import app

runner = CliRunner()

STORE_GROUPS = ("registry", "alerts", "audit", "evidence", "report")
KAFKA_CONSUMERS = {("evidence", "sink")}
"""Run until stopped once their store opens: called here only where opening fails."""
SEEDED_DEVICE = "x"
"""The device (and filler value) every hostile call names, so reports get past the lookup."""


# Typer bundles its own Click, so groups and parameters are recognised by what they have.


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command and group under ``command``, itself included; asked as a
    user's call would ask, so groups loaded on demand are walked too."""
    yield path
    if hasattr(command, "commands"):
        context = typer.Context(command)
        for name in command.list_commands(context):
            yield from walk(command.get_command(context, name), (*path, name))


def command_at(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.get_command(typer.Context(command), name)
    return command


ALL_COMMANDS = list(walk(typer.main.get_command(app)))
STORE_COMMANDS = [
    path
    for path in ALL_COMMANDS
    if path and path[0] in STORE_GROUPS and not hasattr(command_at(path), "commands")
]


def filler(parameter: Any, day: str, directory: Path) -> list[str]:
    """A value for a required parameter: a plausible one, or the hostile one being tried."""
    kind = parameter.bare_type()
    if kind == "float":
        value = "0.5"
    elif kind == "int":
        value = "1"
    elif kind == "Path":
        value = str(directory)  # a directory where a file is wanted
    elif parameter.name in ("start", "end", "registered_on"):
        value = day
    else:
        value = SEEDED_DEVICE
    if parameter.param_type_name == "option":
        return [parameter.opts[0], value]
    return [value]


def arguments(path: tuple[str, ...], day: str, directory: Path) -> list[str]:
    """Every required parameter of the command filled in, and the registration day."""
    args: list[str] = []
    for parameter in command_at(path).params:
        if parameter.required or parameter.name == "registered_on":
            args += filler(parameter, day, directory)
    return [*path, *args]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )


@pytest.fixture
def seeded_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    with EvidenceStore(url) as store:
        store.add_device(SEEDED_DEVICE, tasks=[SEEDED_DEVICE], actor="qa")
    return url


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "postmarket")
def test_every_command_answers_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert_no_traceback(result)
    assert result.exit_code == 0
    assert "Usage: postmarket" in result.output


def test_the_walk_finds_every_store_command() -> None:
    assert {("report",), ("audit", "verify"), ("registry", "list")} <= set(STORE_COMMANDS)


def test_the_walk_finds_the_commands_of_groups_loaded_on_demand() -> None:
    assert ("stack", "up") in ALL_COMMANDS


@pytest.mark.parametrize("path", STORE_COMMANDS, ids=" ".join)
def test_a_store_command_without_its_arguments_says_what_is_missing(
    path: tuple[str, ...], tmp_path: Path
) -> None:
    if path in KAFKA_CONSUMERS:
        pytest.skip("needs no argument: opens the store and then consumes Kafka until stopped")
    result = runner.invoke(app, [*path, "--url", f"sqlite:///{tmp_path / 'e.db'}"])
    assert_no_traceback(result)


def test_a_sink_without_a_broker_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_: object, **__: object) -> None:
        raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")

    monkeypatch.setattr(EvidenceSink, "run", unreachable)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    result = runner.invoke(
        app, ["evidence", "sink", "--bootstrap", "127.0.0.1:1", "--no-metrics", "--url", url]
    )
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "error: cannot consume from Kafka at 127.0.0.1:1: KafkaTimeoutError: Unable to bootstrap"
    )


@pytest.mark.parametrize("path", STORE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    "store",
    ["missing", "directory", "not-a-store", "malformed-url", "seeded"],
)
@pytest.mark.parametrize("day", ["2026-03-01", "2026-02-30", "March 1st"])
def test_a_store_command_with_hostile_arguments_fails_in_words(
    path: tuple[str, ...], store: str, day: str, tmp_path: Path, seeded_url: str
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite\xff" * 64)
    url = {
        "missing": str(tmp_path / "missing" / "evidence.db"),
        "directory": str(tmp_path),
        "not-a-store": str(garbage),
        "malformed-url": "postgresql+nodriver:/\x00",
        "seeded": seeded_url,
    }[store]
    if path in KAFKA_CONSUMERS and store in ("missing", "seeded"):
        pytest.skip("opens the store and then consumes Kafka until stopped")
    result = runner.invoke(app, [*arguments(path, day, tmp_path), "--url", url])
    assert_no_traceback(result)


def test_an_impossible_day_is_reported_as_no_such_date(seeded_url: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app, [*arguments(("report",), "2026-02-30", tmp_path), "--url", seeded_url]
    )
    assert result.exit_code == 1
    assert "no such date" in result.output
    assert "YYYY-MM-DD" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "verify", "--url", "sqlite:///evidnce-typo.db"],
        ["report", "--device", "x", "--from", "2026-02-30", "--to", "2026-03-31", "--out", "."],
        ["registry", "list", "--url", "."],
    ],
    ids=["mistyped-store", "impossible-day", "directory-store"],
)
def test_the_installed_command_prints_one_line_not_a_traceback(
    args: list[str], tmp_path: Path
) -> None:
    environment = fresh_shell_environment(POSTMARKET_HOME=str(tmp_path / "home"))
    finished = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "postmarket", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in finished.stdout + finished.stderr
    assert finished.returncode in (1, 3)
    assert len(finished.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "evidnce-typo.db").exists()
