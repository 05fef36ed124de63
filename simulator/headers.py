"""DICOM headers as a modality would send them, protected health information included.

Each header carries what a real one does: the patient's name, ID, birth date, address
and telephone; accession number and study ID; physicians and operators; institution,
department and station; a descriptor naming the patient; a vendor private block and a
request sequence. The collector's de-identification has to remove or pseudonymise all
of it; :func:`phi_values` lists those values so a test can prove none of them got out.
Everything is derived from the study UID, so a header is the same on every run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from simulator.fleet import SimulatedCase

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
OPHTHALMIC_PHOTOGRAPHY_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
PHI_MARK = "QZX"
"""Upper-case letters no code, vendor string or (lower-case) pseudonym holds; in all PHI."""

_FAMILY_NAMES = ("WANG", "LI", "ZHANG", "LIU", "CHEN", "SMITH", "GARCIA", "MUELLER", "TANAKA")
_GIVEN_NAMES = ("WEI", "FANG", "JING", "MARIA", "JOHN", "ANNA", "HIROSHI", "LEI", "YAN")
_PHYSICIANS = ("HUANG^MIN", "OKAFOR^NGOZI", "ROSSI^LUCA", "PETROV^IVAN")


@dataclass(frozen=True)
class PatientIdentity:
    """The identity a header carries (all of it PHI)."""

    name: str
    patient_id: str
    birth_date: str
    sex: str
    address: str
    telephone: str
    accession_number: str
    referring_physician: str
    operator: str


def patient_identity(case: SimulatedCase) -> PatientIdentity:
    """The seeded identity of the patient of ``case``."""
    rng = random.Random(hashlib.sha256(case.study_uid.encode()).digest())  # noqa: S311
    family, given = rng.choice(_FAMILY_NAMES), rng.choice(_GIVEN_NAMES)
    serial = rng.randrange(10**7, 10**8)
    birth = case.event_time.date() - timedelta(days=rng.randrange(30 * 365, 85 * 365))
    return PatientIdentity(
        name=f"{family}{PHI_MARK}^{given}",
        patient_id=f"MRN{PHI_MARK}{serial}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=rng.choice(("F", "M")),
        address=f"{rng.randrange(1, 999)} {PHI_MARK} Garden Road, {family.title()}ville",
        telephone=f"{PHI_MARK}{rng.randrange(10**7, 10**8)}",  # SH: 16 characters at most
        accession_number=accession_number(case.study_uid),
        referring_physician=rng.choice(_PHYSICIANS).replace("^", f"{PHI_MARK}^", 1),
        operator=f"TECH{PHI_MARK}^{given}",
    )


def accession_number(study_uid: str) -> str:
    """The RIS accession number of a study (follow-up exports name studies by it)."""
    digest = hashlib.sha256(f"accession|{study_uid}".encode()).hexdigest()
    return f"ACC{PHI_MARK}{int(digest[:12], 16) % 10**10:010d}"


def station_name(case: SimulatedCase) -> str:
    scanner = case.scanner
    return f"{case.site_id.upper()}-{scanner.modality}-{scanner.model.replace(' ', '')}"[:16]


def _uid(case: SimulatedCase, suffix: str) -> str:
    return f"{case.study_uid}.{suffix}"[:64]


def header_attributes(case: SimulatedCase, institution: str, city: str) -> list[tuple[str, Any]]:
    """(keyword, value) of every top-level attribute of the study's image header."""
    identity = patient_identity(case)
    scanner = case.scanner
    when = case.event_time
    is_ct = scanner.modality == "CT"
    family = identity.name.split("^")[0]
    day, time_of_day = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    attributes: list[tuple[str, Any]] = [
        ("SOPClassUID", CT_IMAGE_STORAGE if is_ct else OPHTHALMIC_PHOTOGRAPHY_8BIT),
        ("SOPInstanceUID", _uid(case, "1.1")),
        ("StudyInstanceUID", case.study_uid),
        ("SeriesInstanceUID", _uid(case, "1")),
        ("FrameOfReferenceUID", _uid(case, "9")),
        ("StudyDate", day),
        ("SeriesDate", day),
        ("AcquisitionDate", day),
        ("StudyTime", time_of_day),
        ("SeriesTime", time_of_day),
        ("AccessionNumber", identity.accession_number),
        ("StudyID", identity.patient_id[-8:]),
        ("Modality", scanner.modality),
        ("Manufacturer", scanner.manufacturer),
        ("ManufacturerModelName", scanner.model),
        ("SoftwareVersions", scanner.software_version),
        ("DeviceSerialNumber", f"SN{int(case.study_uid[-6:]) % 9973:05d}"),
        ("StationName", station_name(case)),
        ("InstitutionName", institution),
        ("InstitutionAddress", f"1 {PHI_MARK} Hospital Street, {city}"),
        ("InstitutionalDepartmentName", f"Radiology {PHI_MARK}" if is_ct else f"Eye {PHI_MARK}"),
        ("ReferringPhysicianName", identity.referring_physician),
        ("PerformingPhysicianName", identity.referring_physician),
        ("OperatorsName", identity.operator),
        ("PatientName", identity.name),
        ("PatientID", identity.patient_id),
        ("OtherPatientIDs", f"INS{PHI_MARK}{identity.patient_id[-6:]}"),
        ("PatientBirthDate", identity.birth_date),
        ("PatientSex", identity.sex),
        ("PatientAddress", identity.address),
        ("PatientTelephoneNumbers", identity.telephone),
        ("BurnedInAnnotation", "NO"),
    ]
    if is_ct:
        thickness = case.slice_thickness_mm
        attributes += [
            ("BodyPartExamined", "CHEST"),
            ("StudyDescription", f"CT CHEST LOW DOSE for {family}"),
            ("SliceThickness", f"{thickness:g}" if thickness else None),
            ("KVP", "120"),
            ("PixelSpacing", ["0.703125", "0.703125"]),
        ]
    else:
        attributes += [
            ("BodyPartExamined", "EYE"),
            ("StudyDescription", f"FUNDUS DR SCREENING {family}"),
            ("ImageLaterality", "R"),
        ]
    return attributes


@cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword} is not a DICOM keyword")
    return tag, dictionary_VR(tag)


def _element(keyword: str, value: Any) -> DataElement:
    """An element without pydicom's per-value checks (the values are checked by a test)."""
    tag, vr = _tag_and_vr(keyword)
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def study_header(case: SimulatedCase, institution: str, city: str) -> Dataset:
    """The header of one image of the study of ``case`` (no pixel data)."""
    identity = patient_identity(case)
    header = Dataset()
    header.file_meta = FileMetaDataset()
    sop_class = CT_IMAGE_STORAGE if case.scanner.modality == "CT" else OPHTHALMIC_PHOTOGRAPHY_8BIT
    header.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    header.file_meta.MediaStorageSOPInstanceUID = UID(_uid(case, "1.1"))
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.file_meta.ImplementationVersionName = "SIMULATOR_1"
    for keyword, value in header_attributes(case, institution, city):
        header.add(_element(keyword, value))

    request = Dataset()
    request.add(_element("RequestedProcedureID", identity.accession_number))
    request.add(_element("ScheduledProcedureStepID", f"SPS{PHI_MARK}{identity.patient_id[-5:]}"))
    header.add(_element("RequestAttributesSequence", Sequence([request])))

    vendor = header.private_block(0x0009, "SIMULATED VENDOR", create=True)
    vendor.add_new(0x01, "LO", f"{identity.name} {identity.patient_id}")
    return header


def phi_values(case: SimulatedCase, institution: str) -> list[str]:
    """Every identifying value the header of ``case`` carries (none may leave the site)."""
    identity = patient_identity(case)
    return [
        case.study_uid,
        identity.name,
        identity.name.split("^")[0],
        identity.patient_id,
        identity.accession_number,
        identity.address,
        identity.telephone,
        identity.referring_physician,
        identity.operator,
        institution,
        station_name(case),
        PHI_MARK,
    ]
