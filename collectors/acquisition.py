"""Acquisition features of a study, from its DICOM header, for drift and compatibility.

Only device and protocol attributes are kept; the station name becomes a pseudonym.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from collectors.pseudonym import PseudonymKey, station_pseudonym
from postmarket.contracts import AcquisitionFeatures
from postmarket.contracts.events import slice_thickness_band


def acquisition_features(header: Dataset, key: PseudonymKey) -> AcquisitionFeatures:
    """Features of one image header; absent or unreadable attributes are left empty."""
    thickness = _number(_get(header, "SliceThickness"))
    spacing = _get(header, "PixelSpacing")
    station = _text(_get(header, "StationName"), 256)
    return AcquisitionFeatures(
        modality=_text(_get(header, "Modality"), 16),
        manufacturer=_text(_get(header, "Manufacturer"), 64),
        model=_text(_get(header, "ManufacturerModelName"), 64),
        software_versions=_text(_get(header, "SoftwareVersions"), 128),
        slice_thickness_mm=thickness if thickness is not None and 0 < thickness <= 50 else None,
        slice_thickness_band=slice_thickness_band(thickness),
        kvp=_in_range(_number(_get(header, "KVP")), 200.0),
        pixel_spacing_mm=_in_range(_number(spacing[0] if spacing else None), 10.0),
        body_part=_text(_get(header, "BodyPartExamined"), 64),
        station_pseudonym=station_pseudonym(key, station) if station else None,
    )


def _get(header: Dataset, keyword: str) -> Any:
    """An attribute's value, or None when absent or not decodable (broken headers exist)."""
    try:
        return header.get(keyword)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None


def _element_value(element: Any) -> Any:
    return getattr(element, "value", element)


def _text(element: Any, limit: int) -> str | None:
    value = _element_value(element)
    if isinstance(value, MultiValue):
        value = "\\".join(str(v) for v in value)
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip()[:limit]


def _number(element: Any) -> float | None:
    value = _element_value(element)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _in_range(value: float | None, upper: float) -> float | None:
    return value if value is not None and 0 < value <= upper else None
