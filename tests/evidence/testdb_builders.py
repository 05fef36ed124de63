"""A standard test database stratified like the NMPA lung-nodule one, and candidate
versions' outputs on it, for the gate's tests and the report's gate section."""

from __future__ import annotations

import numpy as np
import pandas as pd

HOSPITALS = ("beijing-1", "shanghai-2", "guangzhou-3", "wuhan-4", "chengdu-5")
SCANNERS = (("GE", "Revolution"), ("GE", "Optima"), ("Siemens", "Force"), ("Siemens", "Edge"))


def lung_nodule_database(cases: int = 3000, seed: int = 20) -> pd.DataFrame:
    """A database stratified like the NMPA lung-nodule one: five hospitals, GE and Siemens
    scanners, 15 % sub-millimetre, 35 % 1-2 mm and 50 % about-5 mm slices; two blinded reads,
    the second disagreeing on about 6 % of cases, adjudicated to the label."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.random(cases) < 0.3, "positive", "negative")
    scanner = rng.integers(0, len(SCANNERS), cases)
    thickness = rng.choice([0.625, 1.25, 5.0], size=cases, p=[0.15, 0.35, 0.5])
    flip = rng.random(cases) < 0.06
    other = np.where(label == "positive", "negative", "positive")
    second = np.where(flip, other, label)
    return pd.DataFrame(
        {
            "case_pseudonym": [f"case-{i:05d}" for i in range(cases)],
            "label": label,
            "first_read": label,
            "second_read": second,
            "adjudication": np.where(flip, label, ""),
            "hospital": rng.choice(HOSPITALS, size=cases),
            "scanner_manufacturer": [SCANNERS[s][0] for s in scanner],
            "scanner_model": [SCANNERS[s][1] for s in scanner],
            "slice_thickness_mm": thickness,
        }
    )


def candidate(
    database: pd.DataFrame,
    sensitivity: float,
    specificity: float,
    thin_sensitivity: float,
    weak_hospital: str = "",
) -> pd.DataFrame:
    """A version's outputs: errors spread evenly over the cases of each label, at the given
    rates, with ``thin_sensitivity`` on sub-millimetre slices, and sensitivity 0.80 at
    ``weak_hospital``."""
    thin = database["slice_thickness_mm"] < 1.0
    weak = database["hospital"] == weak_hospital
    positive = database["label"] == "positive"
    decision = database["label"].copy()
    for mask, rate, wrong in (
        (positive & ~thin & ~weak, 1 - sensitivity, "negative"),
        (positive & thin & ~weak, 1 - thin_sensitivity, "negative"),
        (positive & weak, 0.20, "negative"),
        (database["label"] == "negative", 1 - specificity, "positive"),
    ):
        index = database.index[mask]
        rank = np.arange(len(index))
        errors = np.floor((rank + 1) * rate) > np.floor(rank * rate)
        decision[index[errors]] = wrong
    score = np.where(decision == "positive", 0.8, 0.2)
    return pd.DataFrame(
        {
            "case_pseudonym": database["case_pseudonym"],
            "score": score,
            "decision": decision,
            "operating_threshold": 0.5,
        }
    )
