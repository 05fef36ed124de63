"""The acquisition categories a stream's label-free drift tests watch, from a prediction.

Scanner manufacturer and model, slice-thickness band and tube-voltage band: a new scanner
model, a protocol moved to thicker slices or a low-dose kVp shows up here weeks before
any ground truth does. Categories are the collector's strings, bounded in length by the
contracts; the kVp band is derived here so events from any collector release get one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from postmarket.contracts.events import AcquisitionFeatures

AcquisitionDimension = Literal["manufacturer", "model", "slice_thickness_band", "kvp_band"]
ACQUISITION_DIMENSIONS: tuple[AcquisitionDimension, ...] = (
    "manufacturer",
    "model",
    "slice_thickness_band",
    "kvp_band",
)
AcquisitionCategories = dict[AcquisitionDimension, Annotated[str, StringConstraints(max_length=64)]]

KVP_BANDS = ((80.0, "le_80kv"), (100.0, "81_100kv"), (120.0, "101_120kv"))
"""Upper bounds (inclusive) of the tube-voltage bands: low-dose and paediatric CT run at
70-80 kV, routine chest CT at 100-120 kV, dense anatomy at 140 kV."""


def kvp_band(kvp: float | None) -> str | None:
    """The tube-voltage band of an acquisition, or None when the header had no kVp.

    >>> kvp_band(120.0), kvp_band(135.0), kvp_band(None)
    ('101_120kv', 'above_120kv', None)
    """
    if kvp is None:
        return None
    for upper, band in KVP_BANDS:
        if kvp <= upper:
            return band
    return "above_120kv"


def acquisition_categories(acquisition: AcquisitionFeatures) -> AcquisitionCategories:
    """The known categories of one acquisition; unknown dimensions are left out."""
    values: dict[AcquisitionDimension, str | None] = {
        "manufacturer": acquisition.manufacturer,
        "model": acquisition.model,
        "slice_thickness_band": acquisition.slice_thickness_band,
        "kvp_band": kvp_band(acquisition.kvp),
    }
    return {dimension: value for dimension, value in values.items() if value is not None}
