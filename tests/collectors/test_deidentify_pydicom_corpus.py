"""Every DICOM file shipped with pydicom, seeded with PHI canaries, comes out without them.

The files are real headers no one here wrote (CT, MR, CR, US, NM, SR, SEG, RT, DICOMDIRs;
GE, Siemens, Philips, Toshiba, Agfa...). Canaries go where PHI hides: names, IDs, other
patient IDs, dates, institution, physicians, free text with dates in it, private tags,
overlay comments, and sequences the profile does not list, nested four levels deep.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence

from collectors import confidentiality_profile
from collectors.acquisition import acquisition_features
from collectors.deidentify import Deidentifier
from collectors.dicom_input import RejectedFile, read_header
from collectors.pseudonym import PseudonymKey

KEY = PseudonymKey(b"corpus-test-site-secret-0123456789abcdef")

CANARY = "CANARY"
CANARY_DATES = ("19230517", "20190304", "2019-03-04", "04/03/2019", "20190305")
"""Dates injected as values or inside free text; none may survive in any form."""

UNLISTED_SEQUENCE_CANDIDATES = (
    "ProcedureCodeSequence",
    "AnatomicRegionSequence",
    "ReferencedPatientSequence",
    "IconImageSequence",
    "DerivationCodeSequence",
    "ReferencedSeriesSequence",
)


def _unlisted_sequence_keywords() -> list[str]:
    """Sequences that Table E.1-1 does not list: only the walk protects their contents."""
    return [k for k in UNLISTED_SEQUENCE_CANDIDATES if tag_for_keyword(k) not in _listed_tags()]


def _listed_tags() -> set[int]:
    return set(confidentiality_profile.BASIC_PROFILE)


def _read_corpus() -> list[tuple[str, Path, str | None]]:
    """(name, path, reason it is skipped or None) for every file pydicom ships."""
    corpus: list[tuple[str, Path, str | None]] = []
    base = Path(pydicom.data.__file__).parent
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        reason: str | None = None
        try:
            read_header(path)
        except RejectedFile as rejected:
            reason = f"rejected by the collector as {rejected.reason}"
        corpus.append((str(path.relative_to(base)), path, reason))
    return corpus


CORPUS = _read_corpus()
READABLE = [(name, path) for name, path, reason in CORPUS if reason is None]
SKIPPED = Counter(reason for _, _, reason in CORPUS if reason is not None)


def test_the_corpus_is_the_expected_size() -> None:
    """Guards against the corpus silently shrinking (a test over nothing cannot fail)."""
    assert len(READABLE) >= 120, f"only {len(READABLE)} readable files; skipped: {dict(SKIPPED)}"
    assert sum(SKIPPED.values()) < len(READABLE) // 4, dict(SKIPPED)


def _canary_item(depth: int) -> Dataset:
    """A sequence item full of PHI, with an unlisted sequence nested ``depth`` levels more."""
    item = Dataset()
    item.PatientName = f"CANARYDEEP{depth}^NESTED"
    item.PatientID = f"CANARYDEEPID{depth}"
    item.StudyDate = "20190305"
    item.InstitutionName = f"CANARY DEPTH {depth} CLINIC"
    item.CodeMeaning = "chest"  # harmless, must stay
    # Attributes Table E.1-1 does not list at all (DICONDE, newer modules):
    item.SecondaryReviewerName = f"CANARYREVIEWER{depth}^UNLISTED"
    item.SecondaryReviewDate = "20190305"
    item.StudyUpdateDateTime = "20190304101500"
    item.add_new(0x00091010, "LO", "CANARY PRIVATE CREATOR")  # private creator
    item.add_new(0x00091011, "LO", f"CANARYPRIVATEDEEP{depth}")
    if depth > 0:
        keywords = _unlisted_sequence_keywords()
        setattr(item, keywords[depth % len(keywords)], Sequence([_canary_item(depth - 1)]))
    return item


def inject_canaries(header: Dataset) -> None:
    """Write PHI canaries into every kind of place PHI is found in real headers."""
    header.PatientName = "CANARYSURNAME^CANARYGIVEN"
    header.PatientID = "CANARYPID12345"
    header.add_new(0x00101000, "LO", ["CANARYOLDID1", "CANARYOLDID2"])  # OtherPatientIDs
    other = Dataset()
    other.PatientID = "CANARYOTHERID"
    other.IssuerOfPatientID = "CANARY ISSUER"
    header.OtherPatientIDsSequence = Sequence([other])
    header.PatientBirthDate = "19230517"
    header.PatientAddress = "1 Canary Wharf"
    header.StudyDate = "20190304"
    header.AccessionNumber = "CANARYACC77"
    header.InstitutionName = "CANARY GENERAL HOSPITAL"
    header.InstitutionAddress = "2 Canary Road, Canaryville"
    header.ReferringPhysicianName = "CANARYDOC^ALICE"
    header.PerformingPhysicianName = "CANARYPERF^BOB"
    header.OperatorsName = "CANARYOPERATOR^CAROL"
    header.PhysiciansOfRecord = "CANARYRECORD^DAN"
    header.StudyDescription = "CT CHEST 2019-03-04 CANARYSURNAME CANARYPID12345"
    header.SeriesDescription = "f/u Dr Canaryreader 04/03/2019 axial"
    header.ImageComments = "Patient CANARYSURNAME called back on 20190304"
    header.AdditionalPatientHistory = "seen by CANARYDOC for cough"
    header.add_new(0x60004000, "LT", "CANARYOVERLAY comment")  # OverlayComments (60xx,4000)
    header.add_new(0x00290010, "LO", "CANARY VENDOR")  # private creator
    header.add_new(0x00291010, "LO", "CANARYPRIVATETOP")
    top = _unlisted_sequence_keywords()[0]
    setattr(header, top, Sequence([_canary_item(3)]))
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = "1.2.3.4.5"
    referenced.add_new(0x00431010, "LO", "CANARYPRIVATEINLISTED")
    header.ReferencedImageSequence = Sequence([referenced])


def _all_text(dataset: Dataset) -> Iterator[str]:
    """Every value in a dataset and its nested items, as text (bytes decoded latin-1)."""
    for element in dataset.iterall():
        value = element.value
        if isinstance(value, Sequence):
            continue
        if isinstance(value, bytes):
            yield value.decode("latin-1")
        else:
            yield str(value)
    meta = getattr(dataset, "file_meta", None)
    if isinstance(meta, Dataset):
        yield from _all_text(meta)


def _leaks(header: Dataset) -> list[str]:
    blob = "\n".join(_all_text(header)).upper()
    found = [CANARY] if CANARY in blob else []
    return found + [d for d in CANARY_DATES if d in blob]


def _serialised(header: Dataset) -> bytes | None:
    """The header as written to disk, or None if pydicom cannot write this file's form."""
    buffer = io.BytesIO()
    try:
        header.save_as(buffer, enforce_file_format=False)
    except Exception:
        return None
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deidentifier() -> Deidentifier:
    return Deidentifier(KEY)


@pytest.mark.parametrize(("name", "path", "skip_reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_no_canary_survives_and_drift_features_do(
    name: str, path: Path, skip_reason: str | None, deidentifier: Deidentifier
) -> None:
    if skip_reason is not None:
        pytest.skip(skip_reason)
    header = read_header(path)
    inject_canaries(header)
    assert _leaks(header), "the canaries were not injected"
    before = acquisition_features(copy.deepcopy(header), KEY)

    result = deidentifier.deidentify(header)

    assert _leaks(header) == []
    written = _serialised(header)
    if written is not None:
        assert CANARY.encode() not in written.upper()
    assert acquisition_features(header, KEY) == before
    assert header.PatientIdentityRemoved == "YES"
    assert not any(element.tag.is_private for element in header.iterall())
    assert result.case_pseudonym is None or CANARY not in result.case_pseudonym


def _decode_all(dataset: Dataset) -> None:
    """Have pydicom decode every element it can, at every depth."""
    for tag in list(dataset.keys()):
        with contextlib.suppress(Exception):  # left raw: the walk removes what it cannot decode
            element = dataset[tag]
            if element.VR == "SQ":
                for item in element.value or ():
                    _decode_all(item)


def _contents(dataset: Dataset) -> list[tuple[int, str, object]]:
    """Every element as (tag, VR, value), items as nested lists."""
    return [
        (
            int(element.tag),
            element.VR,
            [_contents(item) for item in element.value]
            if element.VR == "SQ"
            else repr(element.value),
        )
        for element in dataset
    ]


@pytest.mark.parametrize(("name", "path"), READABLE, ids=[r[0] for r in READABLE])
def test_raw_and_decoded_elements_come_out_the_same(
    name: str, path: Path, deidentifier: Deidentifier
) -> None:
    """The walk reads UIDs and dates from their bytes and leaves what it keeps or removes
    as is undecoded; the header must come out as if pydicom had decoded everything."""
    raw = read_header(path)
    inject_canaries(raw)
    decoded = copy.deepcopy(raw)
    _decode_all(decoded)

    deidentifier.deidentify(raw)
    deidentifier.deidentify(decoded)

    assert _contents(raw) == _contents(decoded)
    assert _contents(raw.file_meta) == _contents(decoded.file_meta)


def test_harmless_nested_values_survive(deidentifier: Deidentifier) -> None:
    header = FileDataset("x", Dataset(), preamble=b"\0" * 128)
    inject_canaries(header)
    deidentifier.deidentify(header)
    item = getattr(header, _unlisted_sequence_keywords()[0])[0]
    assert item.CodeMeaning == "chest"
    assert header.StudyDescription == "CT CHEST"
    assert header.SeriesDescription == "f/u axial"
