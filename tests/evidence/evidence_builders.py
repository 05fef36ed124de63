"""Valid registry content and alerts for the evidence tests; tests change one thing at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from evidence.store import EvidenceStore
from postmarket.contracts import Alert, Claim, StreamKey

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
DEVICE = "dr-screen"
TASK = "referable_dr"
ACTOR = "qa-lead"
SENSITIVITY = Claim(
    task=TASK,
    metric="sensitivity",
    value=0.872,
    ci_lower=0.818,
    ci_upper=0.915,
    test_database="NIFDC fundus standard database 2018",
)


def registered_device(store: EvidenceStore, version: str = "2.1.0.3") -> None:
    """A device with one task and one registered version that claims sensitivity."""
    store.add_device(
        DEVICE, name="DR Screen", manufacturer="Acme Imaging", tasks=[TASK], actor=ACTOR
    )
    store.add_version(
        DEVICE,
        version,
        status="registered",
        regulator="NMPA",
        reference="NMPA-2020-3-001",
        registered_on=date(2020, 8, 1),
        actor=ACTOR,
    )
    store.add_claim(
        DEVICE,
        version,
        SENSITIVITY,
        intended_acquisitions=["Topcon NW400", "Canon CR-2"],
        intended_populations=["adults with diabetes"],
        actor=ACTOR,
    )


def make_stream(**overrides: Any) -> StreamKey:
    fields: dict[str, Any] = {
        "device_id": DEVICE,
        "device_version": "2.1.0.3",
        "site_id": "site-a",
        "task": TASK,
    }
    fields.update(overrides)
    return StreamKey(**fields)


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": uuid.uuid4(),
        "stream": make_stream(),
        "detector": "sensitivity_cusum",
        "statistic": 5.3,
        "threshold": 4.0,
        "evidence": {"cases": 412, "positives": 57},
        "first_case_time": T0,
        "last_case_time": T0 + timedelta(days=6),
        "raised_at": T0 + timedelta(days=6, minutes=1),
        "severity": "warning",
        "message": "sensitivity below the registered claim at site-a",
    }
    fields.update(overrides)
    return Alert(**fields)
