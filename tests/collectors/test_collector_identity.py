"""Keyed pseudonyms and acquisition features from real DICOM headers shipped with pydicom."""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from collectors.acquisition import acquisition_features
from collectors.pseudonym import PseudonymKey, PseudonymKeyError, case_pseudonym
from postmarket.contracts.events import slice_thickness_band

SECRET = b"distinctive-site-secret-0123456789abcdef"


def _ct_header() -> pydicom.Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    return pydicom.dcmread(path, stop_before_pixels=True)


def test_same_study_same_pseudonym() -> None:
    key = PseudonymKey(SECRET)
    assert case_pseudonym(key, "1.2.3") == case_pseudonym(PseudonymKey(SECRET), "1.2.3")


def test_another_site_key_gives_another_pseudonym() -> None:
    other = PseudonymKey(b"another-site-secret-0123456789abcdefgh")
    assert case_pseudonym(PseudonymKey(SECRET), "1.2.3") != case_pseudonym(other, "1.2.3")


def test_pseudonym_is_not_an_unkeyed_hash_of_the_uid() -> None:
    import hashlib

    pseudonym = case_pseudonym(PseudonymKey(SECRET), "1.2.3")
    assert hashlib.sha256(b"1.2.3").hexdigest()[:10] not in pseudonym


def test_key_never_shows_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    key = PseudonymKey(SECRET)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("key is %s / %r", key, key)
    assert SECRET.decode() not in caplog.text


def test_short_key_is_refused() -> None:
    with pytest.raises(PseudonymKeyError, match="at least 32 bytes"):
        PseudonymKey(b"short")


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "site.key"
    key_file.write_bytes(SECRET)
    os.chmod(key_file, 0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        PseudonymKey.from_file(key_file)


def test_private_key_file_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "site.key"
    key_file.write_bytes(SECRET + b"\n")
    os.chmod(key_file, 0o600)
    assert case_pseudonym(PseudonymKey.from_file(key_file), "1") == case_pseudonym(
        PseudonymKey(SECRET), "1"
    )


def test_features_of_pydicom_ct_sample() -> None:
    features = acquisition_features(_ct_header(), PseudonymKey(SECRET))
    assert (features.modality, features.manufacturer, features.model) == (
        "CT",
        "GE MEDICAL SYSTEMS",
        "RHAPSODE",
    )
    assert (features.slice_thickness_mm, features.slice_thickness_band, features.kvp) == (
        5.0,
        "about_5mm",
        120.0,
    )


def test_station_name_is_pseudonymised() -> None:
    header = _ct_header()
    features = acquisition_features(header, PseudonymKey(SECRET))
    assert features.station_pseudonym is not None
    assert str(header.StationName) not in features.station_pseudonym


@pytest.mark.parametrize(
    ("thickness", "band"),
    [(0.625, "sub_mm"), (1.0, "1_2mm"), (1.25, "1_2mm"), (5.0, "about_5mm"), (3.0, "other")],
)
def test_slice_thickness_bands(thickness: float, band: str) -> None:
    assert slice_thickness_band(thickness) == band


def _implicit_vr_element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


def test_unreadable_attributes_are_left_empty() -> None:
    raw = _implicit_vr_element(0x0018, 0x0050, b"abc ") + _implicit_vr_element(
        0x0018, 0x0060, b"-5"
    )
    header = pydicom.dcmread(io.BytesIO(raw), force=True)
    features = acquisition_features(header, PseudonymKey(SECRET))
    assert (features.slice_thickness_mm, features.kvp, features.modality) == (None, None, None)
