"""The value transforms of de-identification, each keyed by the site's pseudonymisation key
where a value must stay linkable: a patient's stable date shift, keyed UIDs and
identifiers, shifted dates, and descriptors cleaned of identifying words."""

from __future__ import annotations

import re
from datetime import date, timedelta

from pydicom.valuerep import MAX_VALUE_LEN

from collectors.pseudonym import PseudonymKey

MAX_DATE_SHIFT_DAYS = 3650
"""Dates move back by 1..3650 days: one shift per patient, derived from the pseudonym key."""


def date_shift_days(key: PseudonymKey, patient_identity: str) -> int:
    """The patient's stable date shift (days back), unpredictable without the pseudonym key."""
    digest = key.digest("date-shift", patient_identity)
    return 1 + int.from_bytes(digest[:4], "big") % MAX_DATE_SHIFT_DAYS


def keyed_uid(key: PseudonymKey, uid: str) -> str:
    """A replacement UID under the 2.25 root (UUID-derived form, PS3.5 B.2)."""
    digest = key.digest("uid", uid.strip())
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def keyed_identifier(key: PseudonymKey, purpose: str, value: str, vr: str) -> str:
    """A keyed pseudonym of an identifier, short enough for its VR."""
    pseudonym = key.pseudonym(purpose, value.strip())
    return pseudonym[: MAX_VALUE_LEN.get(vr, 64)]


def shift_date(value: str, days: int) -> str | None:
    """A DA value ``YYYYMMDD`` moved back ``days``; None if it is not a full date."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:])) - timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or moved before the year 1
        return None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"


def shift_datetime(value: str, days: int) -> str | None:
    """A DT value moved back ``days`` (its time of day and offset kept); None if no date."""
    text = value.strip()
    moved = shift_date(text[:8], days)
    return None if moved is None else moved + text[8:]


_DATE_OR_TIME = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"  # 2019-03-04, 04/03/2019, 4.3.19
    r"|\d{1,2}:\d{2}(?::\d{2})?"  # 14:05, 14:05:33
    r"|\d{1,2}\s*(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s*\d{2,4}",
    re.IGNORECASE,
)
_HONORIFICS = frozenset({"DR", "MR", "MRS", "MS", "MISS", "PROF", "DOCTOR", "NURSE"})
_PUNCTUATION = "()[]{}<>.,;:'\"!?*#"


_TOKEN_SEPARATORS = re.compile(r"[\s^=,.;:/\\()'\"-]+")


def identifying_tokens(text: str) -> set[str]:
    """Upper-case word parts of an identifying value (names, IDs, institutions)."""
    return {t for t in _TOKEN_SEPARATORS.split(text.upper()) if len(t) >= 2}


def clean_descriptor(text: str, identifying: set[str]) -> str:
    """A descriptor with dates, long numbers and identifying words taken out.

    Keeps the clinical words ("CT CHEST W/O CONTRAST"); drops dates and times, any word
    with four or more digits (IDs, MRNs, phone numbers), names typed after a title
    ("Dr Smith"), words containing ``^`` (DICOM names) and any word that is part of a
    name, ID or institution elsewhere in the same header.
    """
    kept: list[str] = []
    after_title = False
    for word in _DATE_OR_TIME.sub(" ", text).split():
        bare = word.strip(_PUNCTUATION).upper()
        if after_title:
            after_title = False
            continue
        if bare in _HONORIFICS:
            after_title = True
            continue
        digits = sum(ch.isdigit() for ch in bare)
        parts = identifying_tokens(bare) or {bare}
        if digits >= 4 or "^" in word or "@" in word or parts & identifying:
            continue
        kept.append(word)
    return " ".join(kept)
