"""``postmarket registry publish --reference-prevalence``: parsed, validated, published."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from evidence_builders import ACTOR, DEVICE, SENSITIVITY, TASK
from typer.testing import CliRunner

from postmarket.cli import app
from postmarket.contracts import RegistryEntry, decode, encode
from postmarket.evidence import registry_topic
from postmarket.evidence.registry_topic import parse_reference_prevalence, registry_entries
from postmarket.evidence.store import EvidenceStore

runner = CliRunner()


@pytest.fixture
def seeded_url(sqlite_url: str) -> str:
    with EvidenceStore(sqlite_url) as store:
        store.add_device(DEVICE, tasks=[TASK], actor=ACTOR)
        store.add_version(DEVICE, "2.1.0.3", status="registered", actor=ACTOR)
        store.add_claim(DEVICE, "2.1.0.3", SENSITIVITY, actor=ACTOR)
        store.add_version(DEVICE, "2.2.0.0", status="pending", actor=ACTOR)
    return sqlite_url


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[RegistryEntry]:
    """What publish would send, decoded from the bytes it would put on the topic."""
    captured: list[RegistryEntry] = []

    def fake_publish(entries: Sequence[RegistryEntry], bootstrap: str, security: Any) -> int:
        captured.extend(decode(RegistryEntry, encode(entry)) for entry in entries)
        return len(entries)

    monkeypatch.setattr(registry_topic, "publish_registry", fake_publish)
    return captured


def publish(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["registry", "publish", "--url", url, "--bootstrap", "127.0.0.1:1", *args]
    )
    return result.exit_code, result.output


def test_the_option_round_trips_per_device_and_per_version(
    seeded_url: str, sent: list[RegistryEntry]
) -> None:
    code, output = publish(
        seeded_url,
        "--reference-prevalence",
        f"{DEVICE}=0.24",
        "--reference-prevalence",
        f"{DEVICE}@2.2.0.0=0.3",
    )
    assert code == 0, output
    assert "published 2 registry entries" in output
    assert {e.device_version: e.reference_prevalence for e in sent} == {
        "2.1.0.3": 0.24,
        "2.2.0.0": 0.3,
    }


def test_without_the_option_the_prevalence_is_unknown(
    seeded_url: str, sent: list[RegistryEntry]
) -> None:
    code, output = publish(seeded_url)
    assert code == 0, output
    assert [e.reference_prevalence for e in sent] == [None, None]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"{DEVICE}=1.2", "strictly between 0 and 1"),
        (f"{DEVICE}=0", "strictly between 0 and 1"),
        (f"{DEVICE}=nan", "strictly between 0 and 1"),
        (f"{DEVICE}=high", "is not a number"),
        (f"{DEVICE}@=0.2", "is not DEVICE=P or DEVICE@VERSION=P"),
        ("0.2", "is not DEVICE=P or DEVICE@VERSION=P"),
        ("other-device=0.2", "no device or version in the registry: other-device"),
        (f"{DEVICE}@9.0.0.0=0.2", f"no device or version in the registry: {DEVICE}@9.0.0.0"),
    ],
)
def test_a_bad_value_exits_1_naming_the_option_and_publishes_nothing(
    seeded_url: str, sent: list[RegistryEntry], value: str, reason: str
) -> None:
    code, output = publish(seeded_url, "--reference-prevalence", value)
    assert code == 1
    assert "--reference-prevalence" in output
    assert reason in output
    assert sent == []


def test_the_same_device_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="a second prevalence for dr-screen@2.1.0.3"):
        parse_reference_prevalence(["dr-screen@2.1.0.3=0.2", "dr-screen@2.1.0.3=0.3"])


def test_help_describes_the_option() -> None:
    result = runner.invoke(app, ["registry", "publish", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--reference-prevalence" in result.output
    assert "calibrated" in result.output


def test_registry_entries_without_prevalences_say_none(seeded_url: str) -> None:
    with EvidenceStore(seeded_url) as store:
        entries = registry_entries(store.devices())
    assert [e.reference_prevalence for e in entries] == [None, None]
