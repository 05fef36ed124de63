"""A device with two versions, three sites and a season of field data, built in the store."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from evidence_builders import (
    ACTOR,
    DEVICE,
    SENSITIVITY,
    T0,
    TASK,
    make_alert,
    make_stream,
    registered_device,
)

from evidence.store import EvidenceStore
from postmarket.contracts import Claim
from postmarket.contracts.events import AcquisitionFeatures, Outcome, Prediction
from postmarket.versions import ChangeKind, ChangeRecord
from tests.factories import make_outcome, make_prediction

SPECIFICITY = Claim(
    task=TASK,
    metric="specificity",
    value=0.907,
    ci_lower=0.877,
    ci_upper=0.932,
    test_database="NIFDC fundus standard database 2018",
)
SCANNERS = [
    AcquisitionFeatures(manufacturer="Topcon", model="NW400", slice_thickness_band="sub_mm"),
    AcquisitionFeatures(manufacturer="Canon", model="CR-2", slice_thickness_band="1_2mm"),
    AcquisitionFeatures(manufacturer="Zeiss", model="Visucam", slice_thickness_band="about_5mm"),
]
SITES = ["site-a", "site-b", "site-c"]
FIRST_DAY, LAST_DAY = date(2026, 3, 1), date(2026, 3, 31)


def field_cases(
    version: str, sensitivity: float, n: int, seed: int, design: str = "prospective"
) -> tuple[list[Outcome], list[Prediction]]:
    """``n`` predictions of ``version`` across the sites; about 80 % get a final truth."""
    rng = np.random.default_rng(seed)
    outcomes: list[Outcome] = []
    predictions: list[Prediction] = []
    for i in range(n):
        site = i % len(SITES)
        positive = rng.random() < 0.4
        caught = rng.random() < (sensitivity if positive else 0.9)
        decision = (
            ("positive" if caught else "negative")
            if positive
            else ("negative" if caught else "positive")
        )
        fields = {
            "device_version": version,
            "site_id": SITES[site],
            "case_pseudonym": f"c-{version}-{seed}-{i}",
            "event_time": T0 + timedelta(hours=2 * i),
            "acquisition": SCANNERS[(i // 3 + site) % len(SCANNERS)],
            "study_design": design,
        }
        prediction = make_prediction(decision=decision, **fields)
        predictions.append(prediction)
        if rng.random() < 0.8:
            label = "positive" if positive else "negative"
            outcome = make_outcome(decision, label, offset=i, **fields)
            update: dict[str, object] = {"prediction_event_id": prediction.event_id}
            if i % 2 == 0:  # every other case was double read; readers err 8 % of the time
                update["blinded_reads"] = tuple(_misread(label, rng) for _ in range(2))
            outcomes.append(outcome.model_copy(update=update))
    return outcomes, predictions


def _misread(label: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.08:
        return "negative" if label == "positive" else "positive"
    return label


def populated_store(store: EvidenceStore) -> EvidenceStore:
    """Registered 2.1.0.3 holding its claims; unregistered 2.2.0.0 retrained, running worse."""
    registered_device(store)
    store.add_claim(DEVICE, "2.1.0.3", SPECIFICITY, actor=ACTOR)
    store.add_version(DEVICE, "2.2.0.0", status="unregistered", actor=ACTOR)
    store.add_change(
        DEVICE,
        "2.2.0.0",
        ChangeRecord(ChangeKind.TRAINING_DATABASE, "3,000 new cases", 0.15),
        actor=ACTOR,
    )
    for version, sensitivity, n, seed, design in [
        ("2.1.0.3", 0.88, 300, 1, "prospective"),
        ("2.1.0.3", 0.88, 120, 2, "retrospective"),
        ("2.2.0.0", 0.55, 150, 3, "prospective"),
    ]:
        outcomes, predictions = field_cases(version, sensitivity, n, seed, design)
        store.record_field_events(outcomes, predictions)
    for site in SITES:
        store.record_sighting(make_stream(device_version="2.2.0.0", site_id=site), T0, actor=ACTOR)
    resolved = make_alert(stream=make_stream(site_id="site-b"), detector="sensitivity_cusum")
    store.record_alert(resolved, actor=ACTOR)
    store.acknowledge_alert(resolved.alert_id, by="qa-lead", note="checking site-b's camera")
    store.resolve_alert(resolved.alert_id, by="qa-lead", resolution="camera recalibrated")
    for days in (0, 3):  # still running unregistered three days later: a recurrence
        store.record_alert(
            make_alert(
                stream=make_stream(device_version="2.2.0.0"),
                detector="unregistered_change",
                severity="critical",
                message="version 2.2.0.0 runs without the change registration it needs",
                raised_at=T0 + timedelta(days=6 + days, minutes=1),
            ),
            actor=ACTOR,
        )
    return store


__all__ = ["DEVICE", "FIRST_DAY", "LAST_DAY", "SENSITIVITY", "populated_store"]
