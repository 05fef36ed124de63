"""A version's labelled charts are designed when its registration arrives: a new stream of
it finds them designed, the same to the bit as designed at its first event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from postmarket.contracts.events import RegistryEntry, StreamKey
from streams.chart_warming import RegisteredCharts, design_version_charts
from streams.detector_design import labelled_chart
from streams.live_streams import Registrations
from streams.site_streams import POLICY
from streams.stream_monitor import StreamMonitor
from tests.factories import make_registry_entry


@pytest.fixture(autouse=True)
def cold_charts() -> Iterator[None]:
    labelled_chart.cache_clear()
    yield
    labelled_chart.cache_clear()


def first_event_monitor(entry: RegistryEntry, task: str = "referable_dr") -> StreamMonitor:
    """The monitor a new stream of the version starts with (LiveStreams.monitor)."""
    stream = StreamKey(
        device_id=entry.device_id, device_version=entry.device_version, site_id="s1", task=task
    )
    registry = {entry.as_key(): entry.model_dump(mode="json")}
    registration = Registrations(registry).of(stream)
    monitor = StreamMonitor.for_claims(
        registration.claims, POLICY, registration.reference_prevalence, registration.lower_bounds
    )
    monitor.adopt_claims(*registration)
    return monitor


def chart_settings(monitor: StreamMonitor) -> dict[str, Any]:
    return {
        name: detector.settings()
        for name, detector in monitor.detectors.items()
        if name.endswith("_cusum")
    }


def test_a_registered_version_s_first_event_designs_no_chart() -> None:
    entry = make_registry_entry()
    design_version_charts(entry, POLICY)
    misses = labelled_chart.cache_info().misses

    monitor = first_event_monitor(entry)

    assert chart_settings(monitor)
    assert labelled_chart.cache_info().misses == misses


def test_an_unregistered_version_s_first_event_still_designs_its_charts() -> None:
    misses = labelled_chart.cache_info().misses

    first_event_monitor(make_registry_entry())

    assert labelled_chart.cache_info().misses > misses


def test_charts_designed_from_the_registry_equal_those_designed_at_first_event() -> None:
    entry = make_registry_entry()
    at_first_event = chart_settings(first_event_monitor(entry))
    labelled_chart.cache_clear()

    design_version_charts(entry, POLICY)
    from_registry = chart_settings(first_event_monitor(entry))

    assert from_registry == at_first_event
    assert from_registry.keys() == {"sensitivity_cusum", "specificity_cusum"}


def test_a_version_without_registered_claims_designs_nothing() -> None:
    assert design_version_charts(make_registry_entry(registration_status="withdrawn"), POLICY) == 0


def test_each_registry_value_is_designed_once_and_a_new_one_again() -> None:
    charts = RegisteredCharts(POLICY)
    entry = make_registry_entry()
    registry = {entry.as_key(): entry.model_dump(mode="json")}

    assert charts.design_new(registry) == 1
    assert charts.design_new(registry) == 0
    registry[entry.as_key()] = make_registry_entry(device_version=entry.device_version).model_dump(
        mode="json"
    )
    assert charts.design_new(registry) == 1


def test_the_chart_cache_is_bounded() -> None:
    assert labelled_chart.cache_info().maxsize is not None
