"""A simulated standard test database, stratified like the NMPA lung-nodule one, and
candidate versions' outputs on it: the inputs of the gate demo (``postmarket testdb``).

The database has five hospitals, each scanning with one GE and one Siemens CT model, slices
in the three NMPA bands (about 5 mm, 1-2 mm, sub-millimetre) read from the thickness in
millimetres as a DICOM header gives it, and a reference standard read twice blinded, the
disagreements adjudicated. A candidate's errors are placed, not drawn: within each cell of
label and slice band a seeded shuffle orders the cases and every ``1 / error rate``-th one
is wrong, so a cell's observed rate is its designed rate to within one case and the gate's
verdict is the designed one, whatever the seed.

>>> cases = lung_nodule_test_database(cases=400, seed=7)
>>> len(cases), sum(case["label"] == "positive" for case in cases)
(400, 160)
>>> outputs = candidate_outputs(cases, sensitivity=0.95, specificity=0.92,
...                             band_sensitivity={"sub_mm": 0.70}, seed=7)
>>> thin = [o for c, o in zip(cases, outputs)
...         if c["label"] == "positive" and float(c["slice_thickness_mm"]) < 1.0]
>>> round(sum(o["decision"] == "positive" for o in thin) / len(thin), 2)
0.7
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from postmarket.contracts.events import slice_thickness_band

__all__ = [
    "HOSPITALS",
    "SCANNERS",
    "SLICE_THICKNESS_MM",
    "candidate_outputs",
    "lung_nodule_test_database",
    "write_rows",
]

HOSPITALS = (
    "beijing-chest",
    "shanghai-pulmonary",
    "guangzhou-first",
    "wuhan-union",
    "chengdu-west",
)
SCANNERS = {
    "beijing-chest": (("GE", "Revolution CT"), ("Siemens", "SOMATOM Force")),
    "shanghai-pulmonary": (("GE", "Discovery CT750 HD"), ("Siemens", "SOMATOM Force")),
    "guangzhou-first": (("GE", "Revolution CT"), ("Siemens", "SOMATOM Definition AS")),
    "wuhan-union": (("GE", "Discovery CT750 HD"), ("Siemens", "SOMATOM Definition AS")),
    "chengdu-west": (("GE", "Revolution CT"), ("Siemens", "SOMATOM Definition AS")),
}
"""Each hospital's two scanners (manufacturer, model)."""
SLICE_THICKNESS_MM = {
    "GE": {"about_5mm": 5.0, "1_2mm": 1.25, "sub_mm": 0.625},
    "Siemens": {"about_5mm": 5.0, "1_2mm": 1.0, "sub_mm": 0.6},
}
"""The reconstructed thickness each manufacturer writes for each band."""
BAND_SHARES = {"about_5mm": 0.40, "1_2mm": 0.35, "sub_mm": 0.25}
OPERATING_THRESHOLD = 0.5


def lung_nodule_test_database(
    cases: int = 1000, seed: int = 20260105, prevalence: float = 0.4, disagreement: float = 0.06
) -> list[dict[str, str]]:
    """The case list, one row per case as ``postmarket testdb import --cases`` reads it.

    Enriched to ``prevalence`` (an exact share of the cases), hospitals and scanners equally
    often, slice bands as :data:`BAND_SHARES`, independently of hospital and scanner (so a
    failure on one band shows on that band alone); on ``disagreement`` of the cases one of
    the two blinded reads differs from the reference standard and an adjudicator settles it.
    """
    rng = np.random.default_rng(seed)
    positives = round(cases * prevalence)
    labels = rng.permutation(["positive"] * positives + ["negative"] * (cases - positives))
    hospitals = rng.integers(0, len(HOSPITALS), cases)
    scanners = rng.integers(0, 2, cases)
    bands = rng.choice(list(BAND_SHARES), size=cases, p=list(BAND_SHARES.values()))
    disagrees = rng.random(cases) < disagreement
    first_wrong = rng.random(cases) < 0.5
    rows = []
    for i in range(cases):
        label = str(labels[i])
        other = "negative" if label == "positive" else "positive"
        hospital = HOSPITALS[int(hospitals[i])]
        manufacturer, model = SCANNERS[hospital][int(scanners[i])]
        first = other if disagrees[i] and first_wrong[i] else label
        second = other if disagrees[i] and not first_wrong[i] else label
        rows.append(
            {
                "case_pseudonym": f"lung-{i + 1:05d}",
                "label": label,
                "truth_source": "adjudicated_read",
                "first_read": first,
                "second_read": second,
                "adjudication": label if disagrees[i] else "",
                "hospital": hospital,
                "scanner_manufacturer": manufacturer,
                "scanner_model": model,
                "slice_thickness_mm": f"{SLICE_THICKNESS_MM[manufacturer][str(bands[i])]:g}",
            }
        )
    return rows


def candidate_outputs(
    cases: Sequence[Mapping[str, str]],
    sensitivity: float,
    specificity: float,
    band_sensitivity: Mapping[str, float] | None = None,
    seed: int = 20260105,
) -> list[dict[str, str]]:
    """A candidate version's outputs on ``cases``, one row per case as ``postmarket testdb
    run --predictions`` reads it: ``sensitivity`` and ``specificity`` in every slice band,
    but ``band_sensitivity[band]`` where given; errors placed evenly (see the module)."""
    rng = np.random.default_rng(seed)
    bands = [slice_thickness_band(float(case["slice_thickness_mm"])) for case in cases]
    decisions = [case["label"] for case in cases]
    special = band_sensitivity or {}
    for label in ("positive", "negative"):
        for band in sorted({str(b) for b in bands}):
            cell = [
                i for i, case in enumerate(cases) if case["label"] == label and bands[i] == band
            ]
            if label == "positive":
                rate = 1.0 - special.get(band, sensitivity)
            else:
                rate = 1.0 - specificity
            wrong = "negative" if label == "positive" else "positive"
            for rank, index in enumerate(rng.permutation(cell)):
                if np.floor((rank + 1) * rate) > np.floor(rank * rate):
                    decisions[int(index)] = wrong
    margins = rng.uniform(0.05, 0.45, len(cases))
    return [
        {
            "case_pseudonym": case["case_pseudonym"],
            "score": f"{OPERATING_THRESHOLD + (m if d == 'positive' else -m):.4f}",
            "decision": d,
            "operating_threshold": f"{OPERATING_THRESHOLD:g}",
        }
        for case, d, m in zip(cases, decisions, margins, strict=True)
    ]


def write_rows(rows: Sequence[Mapping[str, str]], path: Path) -> Path:
    """``rows`` as a CSV file (columns in the order of the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
