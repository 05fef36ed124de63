"""The unregistered-change check the worker runs on a version's first sighting at a site."""

from __future__ import annotations

from datetime import timedelta

import pytest
from evidence_builders import ACTOR, DEVICE, T0, make_stream, registered_device

from evidence.store import EvidenceStore
from postmarket.unregistered_change import (
    DeviceRegistry,
    unregistered_change_alert,
)
from postmarket.versions import ChangeKind, ChangeRecord, Version, preset

REGISTRY = DeviceRegistry(
    device_id=DEVICE,
    registered_versions=frozenset({Version(2, 1, 0, 3), Version(3, 0, 0, 0)}),
    change_records={
        Version(2, 1, 0, 5): ChangeRecord(ChangeKind.TRAINING_DATABASE, "retrained", 0.25),
        Version(2, 2, 0, 0): ChangeRecord(ChangeKind.TRAINING_DATABASE, "retrained", 0.05),
    },
)


@pytest.mark.parametrize(
    ("policy", "version", "alerts"),
    [
        ("nmpa-syzb", "2.1.0.3", False),  # registered
        ("nmpa-syzb", "3.0.0.0", False),  # registered
        ("nmpa-syzb", "2.1.0.4", False),  # only B changed
        ("nmpa-syzb", "2.1.0.5", True),  # only B, but 25 % of training data changed
        ("nmpa-syzb", "2.1.1.0", True),  # Z changed
        ("nmpa-syzb", "3.0.0.1", False),  # B change from the newer registered version
        ("nmpa-syzb", "1.9.0.0", True),  # nothing registered below it
        ("strict-every-change", "2.1.0.4", True),
        ("loose-major-only", "2.1.1.0", False),
        ("loose-major-only", "4.0.0.0", True),
        ("fda-pccp", "2.2.0.0", False),  # 5 % retraining inside the plan
        ("fda-pccp", "2.3.0.0", True),  # Y change with no change record
    ],
)
def test_alert_only_when_the_change_needed_registration(
    policy: str, version: str, alerts: bool
) -> None:
    stream = make_stream(device_version=version)
    alert = unregistered_change_alert(stream, T0, REGISTRY, preset(policy), raised_at=T0)
    assert (alert is not None) is alerts


def test_alert_carries_the_stream_detector_and_reason() -> None:
    stream = make_stream(device_version="2.1.1.0", site_id="site-b")
    alert = unregistered_change_alert(stream, T0, REGISTRY, preset("nmpa-syzb"), raised_at=T0)
    assert alert is not None
    assert (alert.detector, alert.stream, alert.severity) == (
        "unregistered_change",
        stream,
        "critical",
    )
    assert alert.first_case_time == alert.last_case_time == T0
    assert "Z (corrective update) changed, 2.1.0.3 -> 2.1.1.0" in alert.message
    assert "site site-b" in alert.message


def test_replayed_sighting_gives_the_same_alert_id() -> None:
    stream = make_stream(device_version="2.1.1.0")
    policy = preset("nmpa-syzb")
    first = unregistered_change_alert(stream, T0, REGISTRY, policy)
    again = unregistered_change_alert(stream, T0 + timedelta(hours=1), REGISTRY, policy)
    assert first is not None and again is not None
    assert first.alert_id == again.alert_id


def test_registry_of_another_device_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot judge device 'ct-nodule'"):
        unregistered_change_alert(
            make_stream(device_id="ct-nodule"), T0, REGISTRY, preset("nmpa-syzb")
        )


def test_store_snapshot_feeds_the_check_and_the_alert_path(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, "2.2.0.0", actor=ACTOR)
    stream = make_stream(device_version="2.2.0.0")
    assert store.record_sighting(stream, T0, actor="worker")
    alert = unregistered_change_alert(
        stream, T0, store.registry_snapshot(DEVICE), preset("nmpa-syzb")
    )
    assert alert is not None
    assert store.record_alert(alert, actor="worker")
    assert [view.alert.detector for view in store.alerts()] == ["unregistered_change"]
