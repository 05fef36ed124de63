"""Which PS3.15 Annex E profile and options a collector applies: the action of every
attribute (Table E.1-1 overlaid by each option's column) and the CID 7050 codes that
record them in the de-identified header."""

from __future__ import annotations

from dataclasses import dataclass

from collectors import confidentiality_profile as table


@dataclass(frozen=True)
class MethodCode:
    """A CID 7050 (De-identification Method) code."""

    value: str
    meaning: str


BASIC_PROFILE_CODE = MethodCode("113100", "Basic Application Confidentiality Profile")
RETAIN_DEVICE_IDENTITY_CODE = MethodCode("113109", "Retain Device Identity Option")
RETAIN_MODIFIED_DATES_CODE = MethodCode(
    "113107", "Retain Longitudinal Temporal Information Modified Dates Option"
)
CLEAN_DESCRIPTORS_CODE = MethodCode("113105", "Clean Descriptors Option")


@dataclass(frozen=True)
class ProfileOptions:
    """Which Annex E options apply (all three by default: drift analysis needs them)."""

    retain_device_identity: bool = True
    retain_modified_dates: bool = True
    clean_descriptors: bool = True

    def method_codes(self) -> list[MethodCode]:
        """The CID 7050 codes of the profile and the options in use."""
        codes = [BASIC_PROFILE_CODE]
        if self.retain_device_identity:
            codes.append(RETAIN_DEVICE_IDENTITY_CODE)
        if self.retain_modified_dates:
            codes.append(RETAIN_MODIFIED_DATES_CODE)
        if self.clean_descriptors:
            codes.append(CLEAN_DESCRIPTORS_CODE)
        return codes


def action_table(options: ProfileOptions) -> dict[int, str]:
    """Tag -> action: the basic profile overlaid by each option's column.

    Dates are applied last: where Retain Device Identity keeps a calibration date and the
    modified-dates option modifies it, the date is shifted (the stricter of the two).
    """
    actions = dict(table.BASIC_PROFILE)
    if options.retain_device_identity:
        actions.update(table.RETAIN_DEVICE_IDENTITY)
    if options.clean_descriptors:
        actions.update(table.CLEAN_DESCRIPTORS)
    if options.retain_modified_dates:
        actions.update(table.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    return actions
