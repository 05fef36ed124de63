"""Reference prevalences: kept per version in the store (``registry add-version
--reference-prevalence``, ``registry set-reference-prevalence``), published with each entry,
and overridden by ``registry publish --reference-prevalence`` (parsed, validated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from evidence_builders import ACTOR, DEVICE, SENSITIVITY, TASK
from typer.testing import CliRunner

from evidence import registry_topic
from evidence.registry_topic import parse_reference_prevalence, registry_entries
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket import preflight
from postmarket.contracts import RegistryEntry, decode, encode

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
    monkeypatch.setattr(preflight, "check_kafka", lambda *args, **kwargs: None)  # no broker
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


def registry(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["registry", *args, "--url", url, "--actor", ACTOR])
    return result.exit_code, result.output


def test_a_prevalence_given_at_add_version_is_published(
    sqlite_url: str, sent: list[RegistryEntry]
) -> None:
    assert registry(sqlite_url, "add-device", DEVICE, "--task", TASK)[0] == 0
    code, output = registry(
        sqlite_url, "add-version", DEVICE, "2.1.0.3", "--reference-prevalence", "0.24"
    )
    assert code == 0, output
    assert registry(sqlite_url, "add-version", DEVICE, "2.2.0.0", "--status", "pending")[0] == 0

    code, output = publish(sqlite_url)
    assert code == 0, output
    assert {e.device_version: e.reference_prevalence for e in sent} == {
        "2.1.0.3": 0.24,
        "2.2.0.0": None,
    }


def test_a_prevalence_set_later_is_published_and_listed(
    seeded_url: str, sent: list[RegistryEntry]
) -> None:
    code, output = registry(seeded_url, "set-reference-prevalence", DEVICE, "2.2.0.0", "0.3")
    assert code == 0, output
    assert f"set the reference prevalence of {DEVICE} 2.2.0.0 to 0.3" in output
    listing = runner.invoke(app, ["registry", "list", "--url", seeded_url])
    code, output = listing.exit_code, listing.output
    assert code == 0, output
    assert "2.2.0.0        pending      reference prevalence: 0.3" in output
    assert "2.1.0.3        registered   claims:" in output  # none stored: nothing shown

    assert publish(seeded_url)[0] == 0
    assert {e.device_version: e.reference_prevalence for e in sent} == {
        "2.1.0.3": None,
        "2.2.0.0": 0.3,
    }


def test_a_forgotten_prevalence_is_published_as_unknown(
    seeded_url: str, sent: list[RegistryEntry]
) -> None:
    assert registry(seeded_url, "set-reference-prevalence", DEVICE, "2.2.0.0", "0.3")[0] == 0
    code, output = registry(seeded_url, "set-reference-prevalence", DEVICE, "2.2.0.0", "--unknown")
    assert code == 0, output
    assert "to unknown" in output
    assert publish(seeded_url)[0] == 0
    assert [e.reference_prevalence for e in sent] == [None, None]


def test_the_option_overrides_the_store_version_over_device_over_stored(
    seeded_url: str, sent: list[RegistryEntry]
) -> None:
    with EvidenceStore(seeded_url) as store:
        store.set_reference_prevalence(DEVICE, "2.1.0.3", 0.2, actor=ACTOR)
        store.set_reference_prevalence(DEVICE, "2.2.0.0", 0.25, actor=ACTOR)

    assert publish(seeded_url, "--reference-prevalence", f"{DEVICE}@2.2.0.0=0.4")[0] == 0
    assert [e.reference_prevalence for e in sent] == [0.2, 0.4]
    sent.clear()
    assert publish(seeded_url, "--reference-prevalence", f"{DEVICE}=0.1")[0] == 0
    assert [e.reference_prevalence for e in sent] == [0.1, 0.1]
    sent.clear()
    code, _ = publish(
        seeded_url,
        "--reference-prevalence",
        f"{DEVICE}=0.1",
        "--reference-prevalence",
        f"{DEVICE}@2.1.0.3=0.3",
    )
    assert code == 0
    assert [e.reference_prevalence for e in sent] == [0.3, 0.1]
    with EvidenceStore(seeded_url) as store:  # an override is not stored
        assert [v.reference_prevalence for v in store.device(DEVICE).versions] == [0.2, 0.25]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "nan", "inf"])
def test_add_version_refuses_a_prevalence_outside_0_1(sqlite_url: str, value: str) -> None:
    assert registry(sqlite_url, "add-device", DEVICE, "--task", TASK)[0] == 0
    code, output = registry(
        sqlite_url, "add-version", DEVICE, "2.1.0.3", "--reference-prevalence", value
    )
    assert code == 1
    assert "must lie strictly between 0 and 1" in output
    with EvidenceStore(sqlite_url) as store:
        assert store.device(DEVICE).versions == ()


def test_add_version_refuses_a_prevalence_that_is_no_number(sqlite_url: str) -> None:
    code, output = registry(
        sqlite_url, "add-version", DEVICE, "2.1.0.3", "--reference-prevalence", "high"
    )
    assert code == 2
    assert "--reference-prevalence" in output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["2.1.0.3", "1.5"], "must lie strictly between 0 and 1"),
        (["2.1.0.3"], "give the prevalence P, or --unknown"),
        (["2.1.0.3", "0.2", "--unknown"], "not both"),
        (["9.0.0.0", "0.2"], "no version 9.0.0.0"),
    ],
)
def test_set_reference_prevalence_refuses_with_the_reason(
    seeded_url: str, args: list[str], reason: str
) -> None:
    code, output = registry(seeded_url, "set-reference-prevalence", DEVICE, *args)
    assert code == 1
    assert reason in output
    with EvidenceStore(seeded_url) as store:
        assert [v.reference_prevalence for v in store.device(DEVICE).versions] == [None, None]


def test_add_version_help_describes_the_prevalence() -> None:
    result = runner.invoke(app, ["registry", "add-version", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--reference-prevalence" in result.output
    assert "calibrated" in result.output
