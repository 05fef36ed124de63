"""``postmarket registry publish`` on the real broker: the store's registry as RegistryEntry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from evidence_builders import ACTOR, SENSITIVITY, TASK
from typer.testing import CliRunner

from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket import topics
from postmarket.contracts import RegistryEntry, decode
from postmarket.versions import ChangeKind, ChangeRecord
from tests.integration.pipeline_io import read_topic

pytestmark = pytest.mark.integration

runner = CliRunner()


def seed(url: str, device: str) -> None:
    with EvidenceStore(url) as store:
        store.add_device(device, tasks=[TASK], actor=ACTOR)
        store.add_version(
            device, "2.1.0.3", status="registered", reference_prevalence=0.24, actor=ACTOR
        )
        store.add_claim(device, "2.1.0.3", SENSITIVITY, actor=ACTOR)
        store.add_version(device, "2.2.0.0", status="pending", actor=ACTOR)
        store.add_change(
            device, "2.2.0.0", ChangeRecord(ChangeKind.TRAINING_DATABASE, "", 0.15), actor=ACTOR
        )


def entries_of(bootstrap: str, device: str, at_least: int) -> list[tuple[str, RegistryEntry]]:
    def mine(records: list[Any]) -> list[tuple[str, RegistryEntry]]:
        decoded = [(r.key.decode(), decode(RegistryEntry, r.value)) for r in records]
        return [(key, entry) for key, entry in decoded if entry.device_id == device]

    return mine(read_topic(bootstrap, topics.REGISTRY, lambda rs: len(mine(rs)) >= at_least))


def publish(url: str, bootstrap: str) -> str:
    result = runner.invoke(app, ["registry", "publish", "--url", url, "--bootstrap", bootstrap])
    assert result.exit_code == 0, result.output
    return result.output


def test_publish_writes_every_version_keyed_device_and_version(
    kafka_stack: Any, sqlite_url: str
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    seed(sqlite_url, device)

    assert "published 2 registry entries" in publish(sqlite_url, bootstrap)

    by_key = dict(entries_of(bootstrap, device, 2))
    registered = by_key[f"{device}|2.1.0.3"]
    assert registered.registration_status == "registered"
    assert registered.change_class is None
    assert registered.claims == (SENSITIVITY,)
    assert registered.reference_prevalence == 0.24  # stored with the version
    pending = by_key[f"{device}|2.2.0.0"]
    assert pending.registration_status == "pending"
    assert pending.change_class == "minor_enhancement"
    assert pending.claims == ()
    assert pending.reference_prevalence is None


def test_republishing_repeats_the_same_content_per_key(kafka_stack: Any, sqlite_url: str) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    seed(sqlite_url, device)

    publish(sqlite_url, bootstrap)
    publish(sqlite_url, bootstrap)

    entries = entries_of(bootstrap, device, 4)
    assert len(entries) == 4
    content = {(key, e.model_copy(update={"updated_at": None})) for key, e in entries}
    assert len(content) == 2  # what a compacted topic keeps: one entry per key, unchanged


def test_publish_without_a_broker_fails_with_the_reason(sqlite_url: str) -> None:
    seed(sqlite_url, "dr-screen")
    result = runner.invoke(
        app, ["registry", "publish", "--url", sqlite_url, "--bootstrap", "127.0.0.1:1"]
    )
    assert result.exit_code == 5  # ServiceFailure.UNREACHABLE
    assert "Kafka at 127.0.0.1:1 is not reachable" in result.output
