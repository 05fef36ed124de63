"""bench/profile_worker.py's call timers, in a fresh interpreter as the worker runs them: each
listed call wrapped once the agents are imported, its calls and seconds written, a name no
longer there reported instead of breaking the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from profile_worker import TIMED_CALLS, TIMERS_SITE, group_of, print_timers  # noqa: E402

CALLS = """
import time
import streams.agents  # the worker's agents: the timers wrap their calls from then on
from streams import casefile
time.sleep(0.3)
for _ in range(3):
    casefile.CaseFile().copy()
time.sleep(1.2)
"""


def test_the_listed_calls_are_timed_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "timers.json"
    env = {
        **os.environ,
        "PMS_TIMERS_FILE": str(out),
        "PMS_TIMED_CALLS": json.dumps(["streams.casefile:CaseFile.copy", "streams.casefile:gone"]),
    }
    done = subprocess.run(
        [sys.executable, "-c", TIMERS_SITE + CALLS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    timed = json.loads(out.read_text())
    calls, seconds = timed["spent"]["CaseFile.copy"]
    assert calls == 3 and seconds > 0
    assert timed["missing"] == ["streams.casefile:gone"]


def test_the_timers_print_costliest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "timers.json"
    spent = {"cheap": [10, 0.001], "costly": [2, 0.5]}
    out.write_text(json.dumps({"spent": spent, "missing": ["streams.x:y"]}))
    print_timers(out, 1000)
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith(("cheap", "costly"))]
    assert [row[0] for row in rows] == ["costly", "cheap"]
    assert rows[0][3:] == ["500.00", "250000.00"]  # µs per event, per call
    assert lines[-1] == "not found, not timed: streams.x:y"


def test_every_timed_call_of_the_worker_exists() -> None:
    code = (
        "import importlib, json, sys\n"
        "import streams.agents\n"
        "missing = []\n"
        f"for target in {list(TIMED_CALLS)!r}:\n"
        "    module, _, path = target.partition(':')\n"
        "    owner = importlib.import_module(module)\n"
        "    for part in path.split('.'):\n"
        "        owner = getattr(owner, part, None)\n"
        "    if owner is None:\n"
        "        missing.append(target)\n"
        "print(json.dumps(missing))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


DECODE = "decode_batch (postmarket/contracts/batches.py:131)"
VERIFY = "SiteKeyring.verify (postmarket/authenticity.py:218)"
KEEP = "_keep (streams/agents/join.py:472)"


@pytest.mark.parametrize(
    ("caller", "innermost", "group"),
    [
        (DECODE, "BaseModel.model_validate_json (pydantic/main.py:847)", "our decode/verify"),
        (VERIFY, "crypto_sign_open (nacl/bindings/crypto_sign.py:103)", "our decode/verify"),
        (KEEP, "encode_outcome (postmarket/contracts/codec.py:116)", "join"),
        (KEEP, "trusted (postmarket/contracts/trusted.py:31)", "join"),
    ],
)
def test_a_samples_group_is_what_the_worker_was_doing(
    caller: str, innermost: str, group: str
) -> None:
    """Decoding is the batch's decode and its signature; what the join builds with the
    contracts (outcomes, positions) is the join's."""
    outer = "thread (1): MainThread;_join_record (streams/agents/join.py:180)"
    assert group_of(f"{outer};{caller};{innermost}") == group
