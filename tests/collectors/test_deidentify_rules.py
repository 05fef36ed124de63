"""The de-identifier's rules one at a time: keyed UIDs and IDs, date shifts, descriptors,
private tags, the method attributes, and the generated table being current."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import config, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from collectors import confidentiality_profile as table
from collectors.deidentify import Deidentifier
from collectors.deidentify_profile import ProfileOptions
from collectors.deidentify_values import clean_descriptor, date_shift_days, keyed_uid, shift_date
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.tooling import generate_confidentiality_profile as generator

KEY = PseudonymKey(b"rules-test-site-secret-0123456789abcdef")
OTHER_KEY = PseudonymKey(b"another-site-secret-0123456789abcdefgh")
REPO = Path(__file__).parents[2]


def _header(**values: object) -> Dataset:
    header = Dataset()
    header.PatientID = "MRN-1"
    header.StudyInstanceUID = "1.2.3.4"
    header.StudyDate = "20200115"
    for keyword, value in values.items():
        setattr(header, keyword, value)
    return header


def test_uids_are_keyed_stable_and_valid() -> None:
    uid = keyed_uid(KEY, "1.2.3.4")
    assert uid == keyed_uid(PseudonymKey(b"rules-test-site-secret-0123456789abcdef"), "1.2.3.4")
    assert uid != keyed_uid(OTHER_KEY, "1.2.3.4")
    assert uid.startswith("2.25.") and len(uid) <= 64


def test_pseudonyms_are_stable_across_processes() -> None:
    code = (
        "from collectors.pseudonym import PseudonymKey, case_pseudonym;"
        "print(case_pseudonym(PseudonymKey(b'rules-test-site-secret-0123456789abcdef'), '1.2.3.4'))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == case_pseudonym(KEY, "1.2.3.4")
    assert other.stdout.strip() != case_pseudonym(OTHER_KEY, "1.2.3.4")


def test_one_date_shift_per_patient() -> None:
    first = Deidentifier(KEY).deidentify(_header(StudyDate="20200115"))
    second = Deidentifier(KEY).deidentify(_header(StudyDate="20210301"))
    other_patient = Deidentifier(KEY).deidentify(_header(PatientID="MRN-2"))
    assert first.date_shift_days == second.date_shift_days
    assert first.date_shift_days != other_patient.date_shift_days
    assert 1 <= first.date_shift_days <= 3650


def test_intervals_between_a_patients_dates_are_kept() -> None:
    header = _header(StudyDate="20200115", ContentDate="20200120")
    Deidentifier(KEY).deidentify(header)
    shifted = shift_date(header.StudyDate, -5)
    assert shifted == header.ContentDate and header.StudyDate != "20200115"


def test_a_date_moved_before_the_year_1000_keeps_eight_digits() -> None:
    assert shift_date("10000110", 30) == "09991211"


def test_a_date_that_cannot_move_back_far_enough_is_removed() -> None:
    header = _header(StudyDate="00010101")  # every shift is at least one day
    Deidentifier(KEY).deidentify(header)
    assert "StudyDate" not in header


def test_date_shift_depends_on_the_key() -> None:
    assert date_shift_days(KEY, "id:MRN-1") != date_shift_days(OTHER_KEY, "id:MRN-1")


def test_patient_id_becomes_a_keyed_pseudonym() -> None:
    header = _header()
    Deidentifier(KEY).deidentify(header)
    assert header.PatientID.startswith("p-") and "MRN" not in header.PatientID


def test_private_tags_are_removed_at_every_depth() -> None:
    inner = Dataset()
    inner.add_new(0x00111010, "LO", "secret")
    outer = Dataset()
    outer.add_new(0x00091001, "LO", "secret")
    outer.ReferencedSeriesSequence = Sequence([inner])
    header = _header(ProcedureCodeSequence=Sequence([outer]))
    header.add_new(0x00291001, "LO", "secret")
    result = Deidentifier(KEY).deidentify(header)
    assert result.private_removed == 3
    assert not any(element.tag.is_private for element in header.iterall())


def test_words_of_a_private_element_stored_as_un_are_identifying() -> None:
    header = _header(StudyDescription="CT SMITHCLINIC HEAD")
    creator = b"SMITHCLINIC "  # a private creator written with VR UN: pydicom reads it as LO
    header[0x00090010] = RawDataElement(
        BaseTag(0x00090010), "UN", len(creator), creator, 0, False, True
    )
    Deidentifier(KEY).deidentify(header)
    assert header.StudyDescription == "CT HEAD"


def test_strict_pydicom_validation_gives_the_same_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under pydicom's default (lenient) decoding, UIDs and dates are read from their bytes
    and kept text is left undecoded; with validation that raises, everything is decoded
    first. Both must give the same header."""
    written = io.BytesIO()
    source = _header(
        SOPInstanceUID="1.2.3.4.5",
        SeriesDate="20200114",
        AcquisitionDateTime="20200115101500+0100",
        Manufacturer="ACME",
        StudyDescription="CT CHEST",
        PatientName="DOE^JOHN",
    )
    source.save_as(written, implicit_vr=False, little_endian=True)
    lenient, strict = (dcmread(io.BytesIO(written.getvalue()), force=True) for _ in range(2))

    Deidentifier(KEY).deidentify(lenient)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    Deidentifier(KEY).deidentify(strict)

    assert [(e.tag, e.VR, e.value) for e in lenient] == [(e.tag, e.VR, e.value) for e in strict]


def test_method_attributes_name_the_profile_and_options() -> None:
    header = _header()
    Deidentifier(KEY).deidentify(header)
    codes = [item.CodeValue for item in header.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113109", "113107", "113105"]
    assert header.PatientIdentityRemoved == "YES"
    assert header.LongitudinalTemporalInformationModified == "MODIFIED"
    assert table.EDITION in header.DeidentificationMethod[0]


def test_without_options_only_the_basic_code_is_written() -> None:
    header = _header(StationName="CT01", StudyDescription="CT CHEST")
    options = ProfileOptions(False, False, False)
    Deidentifier(KEY, options).deidentify(header)
    assert [i.CodeValue for i in header.DeidentificationMethodCodeSequence] == ["113100"]
    assert "StationName" not in header and "StudyDescription" not in header


def test_device_identity_is_retained() -> None:
    header = _header(StationName="CT01", DeviceSerialNumber="SN77", Manufacturer="GE")
    Deidentifier(KEY).deidentify(header)
    assert (header.StationName, header.DeviceSerialNumber, header.Manufacturer) == (
        "CT01",
        "SN77",
        "GE",
    )


def test_burned_in_annotation_is_reported() -> None:
    result = Deidentifier(KEY).deidentify(_header(BurnedInAnnotation="YES"))
    assert result.burned_in_annotation is True


def test_key_does_not_show_in_the_deidentifier() -> None:
    assert "rules-test" not in repr(Deidentifier(KEY))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("CT CHEST W/O CONTRAST 2019-03-04", "CT CHEST W/O CONTRAST"),
        ("Follow-up Dr Smith 12:30", "Follow-up"),
        ("MRN 1234567 chest", "MRN chest"),
        ("DOE^JOHN head", "head"),
        ("knee jones", "knee"),
    ],
)
def test_descriptors_lose_dates_numbers_and_names(text: str, kept: str) -> None:
    assert clean_descriptor(text, {"JONES"}) == kept


@given(
    words=st.lists(st.sampled_from(["CT", "CHEST", "axial", "lung", "w/o"]), max_size=5),
    name=st.from_regex(r"[A-Z]{3,10}", fullmatch=True),
    year=st.integers(1900, 2100),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
)
def test_no_identifying_word_or_date_survives_cleaning(
    words: list[str], name: str, year: int, month: int, day: int
) -> None:
    dates = [
        f"{year}{month:02d}{day:02d}",
        f"{year}-{month:02d}-{day:02d}",
        f"{day}/{month}/{year}",
    ]
    text = " ".join([*words, name, *dates])
    cleaned = clean_descriptor(text, {name})
    assert name not in cleaned.split()
    assert not any(date in cleaned for date in dates)


def test_generated_table_is_current_with_the_installed_dicom_anonymizer() -> None:
    installed = generator.installed_package_dir("dicomanonymizer")
    if installed is None:
        pytest.skip("dicom-anonymizer (dev extra) is not installed")
    module = generator.ANONYMIZER_MODULE.format(edition=table.EDITION)
    source = generator.read_source(installed, module)
    assert source.sha256 == table.BASIC_PROFILE_SHA256, "regenerate the table (see its header)"
    basic = generator.parse_anonymizer(source)
    assert {tag: action for tag, (action, _) in basic.tags.items()} == table.BASIC_PROFILE


def test_generated_options_are_current_with_idiscore_when_installed() -> None:
    installed = generator.installed_package_dir("idiscore")
    if installed is None:
        pytest.skip("idiscore is not installed (its pins conflict with pydicom 3)")
    source = generator.read_source(installed, generator.IDISCORE_MODULE)
    assert source.sha256 == table.OPTIONS_SHA256


def test_the_table_is_complete() -> None:
    assert len(table.BASIC_PROFILE) >= 600
    assert table.BASIC_PROFILE[0x00100010] == "Z"  # PatientName
    assert table.BASIC_PROFILE[0x0020000D] == "U"  # StudyInstanceUID
    assert table.RETAIN_DEVICE_IDENTITY[0x00081010] == "K"  # StationName
