"""Reading and writing DICOM elements the way de-identification needs: a raw element's VR
without decoding its value, a value read without raising, and generated values stored
without pydicom's conversion (they are valid by construction)."""

from __future__ import annotations

from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks
from pydicom.hooks import raw_element_value as default_raw_element_value
from pydicom.hooks import raw_element_vr as default_raw_element_vr
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

STRING_VALUED_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})
"""VRs whose decoded value is the plain ``str`` (dates and times too, unless pydicom is
configured to convert them to ``datetime``)."""


def assign_values(dataset: Dataset, tag: BaseTag, element: DataElement, values: list[str]) -> None:
    """Give an element new values we generated (keyed UIDs and IDs, shifted dates)."""
    if not store_values(dataset, tag, element.VR, values):
        element.value = values or None


def store_values(dataset: Dataset, tag: BaseTag, vr: str, values: list[str]) -> bool:
    """Store no value or a single one in a new element; False where that would differ.

    The value is stored as is: it is already in the form pydicom converts such a value
    to, and valid by construction, so the value setter's conversion and validation would
    only cost time. Several values (a MultiValue) and other VRs are left to the setter.
    """
    if vr == "UN":  # a new element might take the dictionary's VR instead
        return False
    if not values:
        dataset[tag] = DataElement(tag, vr, None, already_converted=True)
    elif len(values) > 1:
        return False
    elif vr in STRING_VALUED_VRS or (vr in ("DA", "DT") and not config.datetime_conversion):
        dataset[tag] = DataElement(tag, vr, values[0], already_converted=True)
    elif vr == "UI":
        uid = UID(values[0], validation_mode=config.IGNORE)
        dataset[tag] = DataElement(tag, vr, uid, already_converted=True)
    else:
        return False
    return True


def decoding_cannot_fail() -> bool:
    """Whether pydicom, as configured now, decodes every text VR without raising.

    With its defaults (validation warns, dates stay strings, no callbacks of ours) a
    text value that does not decode is decoded with replacement characters and a
    warning, never an exception. Decoding a kept text value only to find out that it
    cannot be decoded is then pointless, and UIDs and dates can be read from their bytes.
    """
    return (
        config.settings.reading_validation_mode != config.RAISE
        and not config.datetime_conversion
        and config.data_element_callback is None
        and hooks.raw_element_vr is default_raw_element_vr
        and hooks.raw_element_value is default_raw_element_value
    )


def stored_vr(
    tag: int, stored: DataElement | RawDataElement
) -> tuple[DataElement | None, str | None]:
    """The element if pydicom has decoded it already, and its VR (see ``raw_vr``)."""
    if isinstance(stored, DataElement):
        return stored, stored.VR
    return None, raw_vr(tag, stored.VR)


RAW_VR_CACHE_LIMIT = 65536
RAW_VRS: dict[tuple[int, str | None], str | None] = {}
"""(tag, stored VR) -> the VR :func:`raw_vr` found, bounded like the de-identifier's plans."""


def raw_vr(tag: int, vr: str | None) -> str | None:
    """A raw element's VR without decoding its value; None when only decoding can tell.

    That is the VR written in the file (explicit VR) or the dictionary's (implicit VR),
    the same ones pydicom decodes with; ambiguous dictionary VRs (``US or SS``), ``UN``
    of a known tag and ``UN`` of a private tag (pydicom looks its creator up in the
    private dictionary: it may be a name) are left to decoding, which resolves them.
    """
    if vr and vr != "UN":
        return vr
    if vr and tag >> 16 & 1:
        return None
    try:
        return RAW_VRS[(tag, vr)]
    except KeyError:
        pass
    try:
        listed = dictionary_VR(tag)
    except KeyError:
        known = "UN" if vr else None
    else:
        known = None if " or " in listed or vr == "UN" else listed
    if len(RAW_VRS) >= RAW_VR_CACHE_LIMIT:
        RAW_VRS.clear()
    RAW_VRS[(tag, vr)] = known
    return known


def decoded_element(dataset: Dataset, tag: BaseTag) -> DataElement | None:
    try:
        return dataset[tag]
    except Exception:
        return None


def element_values(element: DataElement) -> list[Any]:
    value = element.value
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, MultiValue | list | tuple):
        return [v for v in value if v is not None and v != ""]
    return [] if value == "" else [value]


def text_of(header: Dataset, tag: int) -> str | None:
    try:
        element = header.get(tag)
    except Exception:
        return None
    value = getattr(element, "value", None)
    if value is None or isinstance(value, bytes | Sequence) or str(value).strip() == "":
        return None
    return str(value).strip()
