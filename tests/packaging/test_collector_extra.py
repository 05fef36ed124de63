"""A hospital installs only the collector: no Faust, aiokafka or SQLAlchemy in its venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
UV = Path(sys.executable).parent / "uv"
WORKER_ONLY = {"faust-streaming", "aiokafka", "sqlalchemy", "mode-streaming", "psycopg"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("collector") / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(REPO / "constraints.txt"),
            f"{REPO}[collector]",
        ],
        check=True,
    )
    return venv


def _installed(venv: Path) -> set[str]:
    listing = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(venv / "bin" / "python")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("==")[0].lower() for line in listing.splitlines() if "==" in line}


def test_collector_extra_pulls_no_worker_packages(collector_venv: Path) -> None:
    installed = _installed(collector_venv)
    assert {"kafka-python", "pydicom", "pydantic"} <= installed
    assert not installed & WORKER_ONLY


def test_collector_code_imports_without_worker_packages(collector_venv: Path) -> None:
    code = (
        "import collectors.producer, collectors.acquisition, collectors.service,"
        " collectors.store_scp, collectors.stow_rs, postmarket.contracts, launcher.cli;"
        "import importlib.util as u;"
        "assert u.find_spec('faust') is None and u.find_spec('sqlalchemy') is None"
    )
    subprocess.run([str(collector_venv / "bin" / "python"), "-c", code], check=True)


def test_worker_command_explains_the_missing_extra(collector_venv: Path) -> None:
    result = subprocess.run(
        [str(collector_venv / "bin" / "postmarket"), "worker"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "worker" in result.stderr and "extra" in result.stderr
