"""The simulator's registrations carry the prevalence its devices' scores are calibrated at."""

from __future__ import annotations

import pytest

from postmarket import topics
from postmarket.contracts import RegistryEntry, decode
from simulator.fleet import device_operating_point
from simulator.ground_truth import registry_entries
from simulator.scenario import Scenario
from tests.simulator.conftest import DryRun


def test_every_registration_carries_its_device_reference_prevalence(
    demo_scenario: Scenario,
) -> None:
    entries = registry_entries(demo_scenario)
    devices = {device.id: device for device in demo_scenario.devices}
    assert len(entries) > len(devices)  # registered rollouts too
    for entry in entries:
        device = devices[entry.device_id]
        assert entry.reference_prevalence == device.reference_prevalence
        assert entry.reference_prevalence == pytest.approx(
            device_operating_point(device).reference_prevalence
        )


def test_the_published_registry_records_carry_it(
    small_scenario: Scenario, small_dry_run: DryRun
) -> None:
    prevalence = {device.id: device.reference_prevalence for device in small_scenario.devices}
    published = [
        decode(RegistryEntry, r.value) for r in small_dry_run.records if r.topic == topics.REGISTRY
    ]
    assert published
    assert {e.device_id: e.reference_prevalence for e in published} == prevalence
