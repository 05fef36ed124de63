"""bench/quiet_machine.py: a measured run waits for an idle broker, at most its cap; the
bench scripts' doctests hold (the bench folder is not among pytest's doctest paths)."""

from __future__ import annotations

import doctest
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

import profile_worker  # noqa: E402
import quiet_machine  # noqa: E402
from quiet_machine import broker_pid, cpu_seconds, settle  # noqa: E402


def child(code: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", code])  # noqa: S603 - our interpreter
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def idle() -> Iterator[subprocess.Popen[bytes]]:
    yield from child("import time; time.sleep(60)")


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    yield from child("while True: pass")


def test_an_idle_process_lets_the_run_start_at_the_first_look(
    idle: subprocess.Popen[bytes],
) -> None:
    # One look a second; a few allowed for a machine still writing back other work.
    assert settle(idle.pid, cap_s=30.0) < 10.0


def test_a_busy_process_holds_the_run_back_until_the_cap(busy: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    while cpu_seconds(busy.pid) < 0.2:  # running, not starting up
        assert time.monotonic() - started < 10
        time.sleep(0.05)
    assert settle(busy.pid, cap_s=2.5) >= 2.5


def test_no_stack_has_no_broker(tmp_path: Path) -> None:
    assert broker_pid(tmp_path) is None
    assert cpu_seconds(None) == 0.0


@pytest.mark.parametrize("module", [quiet_machine, profile_worker])
def test_the_doctests_of_the_bench_scripts_hold(module: object) -> None:
    failed, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried > 0
    assert failed == 0
