"""The pipeline's long-running Kafka commands, with no broker there: one line, exit 5.

``worker``, ``replay`` and ``simulate`` (to Kafka) check the configured broker before they
start, as ``registry publish`` and ``topics create`` do (tests/launcher/
test_kafka_commands_fail_fast.py), instead of retrying or failing deep inside a client
library. Each runs in a subprocess, as an operator runs it, against a closed port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.stack.processes import free_port
from postmarket.preflight import ServiceFailure

REPO = Path(__file__).resolve().parents[2]
FAIL_FAST_S = 15.0
REPLAY_CSV = "event_time,site_id,case_pseudonym\n2026-03-01T09:30:00Z,site-a,c-1\n"
COMMANDS = {
    "worker": ["worker"],
    "replay": ["replay", "history.csv", "--kind", "predictions"],
    "simulate": ["simulate", "--scenario", str(REPO / "scenarios" / "demo.toml")],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_no_broker_exits_5_with_one_line_naming_it(name: str, tmp_path: Path) -> None:
    (tmp_path / "history.csv").write_text(REPLAY_CSV, encoding="utf-8")
    bootstrap = f"127.0.0.1:{free_port()}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
    environment |= {"POSTMARKET_KAFKA_BOOTSTRAP": bootstrap, "POSTMARKET_HOME": str(tmp_path)}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "postmarket", *COMMANDS[name]], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == ServiceFailure.UNREACHABLE == 5, done.stdout + done.stderr
    assert time.monotonic() - began < FAIL_FAST_S
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Kafka at {bootstrap} is not reachable")
    assert "postmarket stack up" in lines[0]
    assert not (tmp_path / "simulation-ground-truth.json").exists()
