"""A manufacturer's engineer's first hour, as docs/manufacturer.md walks it, on the real stack.

Every step is the real ``postmarket`` command in a fresh directory (its default evidence
store, ./.postmarket/evidence.db), pointed at the real broker by POSTMARKET_KAFKA_BOOTSTRAP:
register a device, a registered version with its claims and a site's public signing key,
publish the registry; a real Faust worker (``LocalWorker``) then sees the site's cases,
among them one of a version nobody registered; the evidence sink stores the alert the worker
raises; the engineer finds it in ``alerts list``, acknowledges it, resolves it, and sees it
resolved (``alerts show``, ``alerts list --status resolved``), every step in an intact audit
trail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket.config import Settings
from tests.factories import T0, make_followup, make_prediction
from tests.integration.pipeline_io import SignedProducer, free_port, site_signing_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASK = "referable_dr"


class Shell:
    """The engineer's shell: a fresh directory, no POSTMARKET_* but the broker's address."""

    def __init__(self, root: Path, bootstrap: str) -> None:
        self.root = root
        self.environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
        self.environment["POSTMARKET_KAFKA_BOOTSTRAP"] = bootstrap

    def postmarket(self, *argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "postmarket", *argv], cwd=self.root, env=self.environment,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        shown = f"postmarket {' '.join(argv)} exited {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, shown
        assert "Traceback" not in done.stdout + done.stderr, shown
        return done.stdout + done.stderr


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"journey-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path / "worker-home",
        }
    )
    running = LocalWorker(settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def field_cases(device: str, site: str) -> list[Any]:
    """Ten cases of the registered version with their truth, then one of 2.2.0.0."""
    events: list[Any] = []
    for i in range(10):
        case, label = f"c-{device}-{i}", "positive" if i % 3 == 0 else "negative"
        events.append(
            make_prediction(
                device_id=device, device_version="2.1.0.0", task=TASK, site_id=site,
                case_pseudonym=case, decision=label, event_time=T0 + timedelta(hours=i),
            )
        )  # fmt: skip
        events.append(
            make_followup(
                site_id=site, case_pseudonym=case, label=label,
                event_time=T0 + timedelta(hours=i, days=10),
            )
        )  # fmt: skip
    events.append(
        make_prediction(
            device_id=device, device_version="2.2.0.0", task=TASK, site_id=site,
            case_pseudonym=f"c-{device}-new", event_time=T0 + timedelta(days=1),
        )
    )  # fmt: skip
    return events


def test_manufacturer_registers_publishes_and_resolves_an_alert(
    worker: LocalWorker, tmp_path: Path
) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    shell = Shell(tmp_path, bootstrap)
    device, site = f"dr-{uuid.uuid4().hex[:8]}", f"site-{uuid.uuid4().hex[:8]}"

    shell.postmarket("registry", "add-device", device, "--task", TASK,
                     "--name", "DR Screen", "--manufacturer", "ACME")  # fmt: skip
    shell.postmarket("registry", "add-version", device, "2.1.0.0", "--status", "registered",
                     "--regulator", "NMPA", "--reference", "NMPA 20213210001",
                     "--registered-on", "2021-06-01", "--reference-prevalence", "0.3")  # fmt: skip
    shell.postmarket("registry", "add-claim", device, "2.1.0.0", TASK, "--metric", "sensitivity",
                     "--value", "0.872", "--ci-lower", "0.818", "--ci-upper", "0.915",
                     "--test-database", "NIFDC fundus standard database")  # fmt: skip
    assert "2.1.0.0" in shell.postmarket("registry", "list")
    public_key = site_signing_key(site).public_key_base64  # as the site's `keygen` printed it
    shell.postmarket("site-keys", "register", "--site", site, "--public-key", public_key)
    assert site in shell.postmarket("site-keys", "list")
    shell.postmarket("registry", "publish")
    time.sleep(2)  # the worker's global registry table follows the compacted topic

    with SignedProducer(bootstrap) as producer:
        producer.deliver(field_cases(device, site))

    alerts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    group = f"journey-sink-{uuid.uuid4().hex[:8]}"
    while not alerts and time.monotonic() < deadline:
        shell.postmarket("evidence", "sink", "--group", group, "--until-idle", "3", "--no-metrics")
        alerts = json.loads(shell.postmarket("alerts", "list", "--device", device, "--json"))
    assert [a["detector"] for a in alerts] == ["unregistered_change"], alerts
    (alert,) = alerts
    assert alert["status"] == "open" and "2.2.0.0" in json.dumps(alert)
    short_id = alert["alert_id"][:8]

    listed = shell.postmarket("alerts", "list", "--device", device)
    assert short_id in listed
    shell.postmarket("alerts", "ack", short_id, "--note", "asking site IT which version runs",
                     "--by", "qa-lead")  # fmt: skip
    shell.postmarket("alerts", "resolve", short_id, "--by", "qa-lead",
                     "--resolution", "a pilot install; rolled back to 2.1.0.0")  # fmt: skip

    shown = shell.postmarket("alerts", "show", short_id)
    assert "resolved" in shown and "rolled back to 2.1.0.0" in shown
    (resolved,) = json.loads(
        shell.postmarket("alerts", "list", "--device", device, "--status", "resolved", "--json")
    )
    assert resolved["alert_id"] == alert["alert_id"]
    assert (
        json.loads(
            shell.postmarket("alerts", "list", "--device", device, "--status", "open", "--json")
        )
        == []
    )
    assert "audit trail intact" in shell.postmarket("audit", "verify")
