"""The store finds alerts by short id and filters them by device, site and time, on each
engine (SQLite, and PostgreSQL under the integration marker)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from evidence_builders import T0, make_alert, make_stream

from evidence.store import AmbiguousAlertId, EvidenceStore

FIRST = uuid.UUID("7b0c9a52-1f1e-4f35-9d0e-2a8b8c1e2f11")
TWIN = uuid.UUID("7b0c9a52-ffff-4000-8000-000000000009")


def test_a_short_id_finds_its_alert(store: EvidenceStore) -> None:
    store.record_alert(make_alert(alert_id=FIRST), actor="worker")
    assert store.alert("7b0c9a52").alert.alert_id == FIRST


def test_a_short_id_two_alerts_share_is_ambiguous(store: EvidenceStore) -> None:
    store.record_alert(make_alert(alert_id=FIRST), actor="worker")
    store.record_alert(make_alert(alert_id=TWIN, detector="model_drift"), actor="worker")
    with pytest.raises(AmbiguousAlertId, match="more than one alert id"):
        store.alert("7b0c9a52")
    assert store.alert("7b0c9a52-f").alert.alert_id == TWIN


@pytest.mark.parametrize("given", ["7b0c9a521f", "7B0C9A52-1F1E-4F", "7b0c9a521f1e4f35"])
def test_a_longer_prefix_is_found_with_or_without_dashes(store: EvidenceStore, given: str) -> None:
    store.record_alert(make_alert(alert_id=FIRST), actor="worker")
    store.record_alert(make_alert(alert_id=TWIN, detector="model_drift"), actor="worker")
    assert store.alert(given).alert.alert_id == FIRST


def test_alerts_are_filtered_by_device_site_and_raise_time(store: EvidenceStore) -> None:
    wanted = make_alert(raised_at=T0 + timedelta(days=2), stream=make_stream(site_id="site-b"))
    unwanted = [
        make_alert(raised_at=T0 + timedelta(days=3), stream=make_stream(site_id="site-a")),
        make_alert(raised_at=T0, stream=make_stream(site_id="site-b", task="other")),
        make_alert(raised_at=T0 + timedelta(days=4), stream=make_stream(device_id="lung-ct")),
    ]
    for alert in (wanted, *unwanted):
        store.record_alert(alert, actor="worker")
    found = store.alerts(device_id="dr-screen", site_id="site-b", since=T0 + timedelta(days=1))
    assert [view.alert.alert_id for view in found] == [wanted.alert_id]
