"""docs/manufacturer.md's ``postmarket registry`` and ``alerts`` examples work when pasted.

Every such command of the page's console blocks runs, in the page's order, as a user would
run it: the real ``postmarket`` in a fresh directory, so it finds its default store (a new
SQLite file under ./.postmarket). A non-zero exit or a traceback fails. Commands that talk
to Kafka run only against the real broker (the integration variant). A block that names an
alert with the placeholder ``ALERT_ID`` is about an alert only a running pipeline raises:
before it runs, the alert it is about (a drift alert for the block that re-baselines, a
claims-test alert for the others) is stored through the store's own API, as the evidence
sink stores one, and its id stands for the placeholder.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from evidence_builders import make_alert
from fresh_shell import fresh_shell_environment

from evidence.lifecycle import AlertStatus
from evidence.store import EvidenceStore
from postmarket.contracts import Alert

DOC = Path(__file__).resolve().parents[2] / "docs" / "manufacturer.md"
GROUPS = ("registry", "alerts")
NEEDS_A_BROKER = {("registry", "publish"), ("alerts", "rebaseline"), ("alerts", "resolve")}
"""Commands the page runs on what publishes to Kafka (its `resolve` is of a claim alert)."""
ALERT_PLACEHOLDER = "ALERT_ID"
"""The word the page writes for the id of an alert only a running pipeline has."""
CONSOLE_BLOCK = re.compile(r"^[ \t]*```console\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def doc_blocks(markdown: str) -> list[list[list[str]]]:
    """The page's console blocks, each as its ``postmarket registry|alerts`` commands, in
    order, each command as its argv: continuation lines joined, comments dropped."""
    blocks: list[list[list[str]]] = []
    for block in CONSOLE_BLOCK.findall(markdown):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands = []
        for line in joined.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["postmarket"] and argv[1:2] and argv[1] in GROUPS:
                commands.append(argv)
        blocks.append(commands)
    return blocks


def doc_commands(markdown: str) -> list[list[str]]:
    return [argv for block in doc_blocks(markdown) for argv in block]


def runnable(argv: list[str], broker: bool) -> bool:
    return broker or tuple(argv[1:3]) not in NEEDS_A_BROKER


def alert_for(block: list[list[str]]) -> Alert:
    """The alert a block's ``ALERT_ID`` stands for: the drift alert the block re-baselines,
    else a rejected claims test (what ``alerts resolve`` publishes a review decision for)."""
    rebaselines = any(argv[1:3] == ["alerts", "rebaseline"] for argv in block)
    detector = "model_drift" if rebaselines else "sensitivity_claims_test"
    return make_alert(alert_id=uuid.uuid4(), detector=detector)


def seed(directory: Path, alert: Alert) -> None:
    """Store ``alert`` in the directory's default store, as the evidence sink stores one."""
    (directory / ".postmarket").mkdir(exist_ok=True)
    with EvidenceStore(f"sqlite:///{directory / '.postmarket' / 'evidence.db'}") as store:
        assert store.record_alert(alert, actor="evidence-sink")


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
    assert ("alerts", "ack") in run
    assert {tuple(argv[1:3]) for argv in commands} >= NEEDS_A_BROKER


def test_every_alert_placeholder_is_in_a_block_about_one_alert() -> None:
    blocks = doc_blocks(DOC.read_text(encoding="utf-8"))
    about_alerts = [block for block in blocks if any(ALERT_PLACEHOLDER in a for a in block)]
    assert {argv[2] for block in about_alerts for argv in block} >= {"ack", "rebaseline", "resolve"}
    for block in about_alerts:
        assert block[0][1:4] == ["alerts", "ack", ALERT_PLACEHOLDER]  # its alert is new


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
    seeded: list[Alert] = []
    for block in doc_blocks(DOC.read_text(encoding="utf-8")):
        if any(ALERT_PLACEHOLDER in argv for argv in block):
            seeded.append(alert_for(block))
            seed(tmp_path, seeded[-1])
        for argv in block:
            if runnable(argv, broker):
                named = [str(seeded[-1].alert_id) if w == ALERT_PLACEHOLDER else w for w in argv]
                paste(named, tmp_path, environment)
    assert (tmp_path / ".postmarket" / "evidence.db").is_file()
    assert [alert.detector for alert in seeded] == ["model_drift", "sensitivity_claims_test"]
    with EvidenceStore(f"sqlite:///{tmp_path / '.postmarket' / 'evidence.db'}") as store:
        statuses = [store.alert(alert.alert_id).status for alert in seeded]
        actions = [entry.action for entry in store.audit_entries()]
    # Without a broker each alert is acknowledged as the page says; with one, resolved too.
    done = AlertStatus.RESOLVED if broker else AlertStatus.ACKNOWLEDGED
    assert statuses == [done, done]
    assert (("stream.rebaseline" in actions) and ("stream.review" in actions)) is broker
