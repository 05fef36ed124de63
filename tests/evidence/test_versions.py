"""Versions S.Y.Z.B and change-control decisions, as tables of cases (every preset, every kind)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postmarket.contracts.events import VERSION_PATTERN
from postmarket.versions import (
    PRESETS,
    ChangeKind,
    ChangeRecord,
    PolicyError,
    Version,
    VersionError,
    change_class,
    changed_components,
    most_significant_change,
    policy_from_config,
    preset,
    registration_required,
)

parts = st.integers(min_value=0, max_value=999_999)
versions = st.builds(Version, parts, parts, parts, parts)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.1", Version(0, 0, 0, 1)),
        ("2.1.0.3", Version(2, 1, 0, 3)),
        ("10.20.30.40", Version(10, 20, 30, 40)),
        ("999999.0.0.1", Version(999_999, 0, 0, 1)),
    ],
)
def test_parse_reads_four_parts(text: str, expected: Version) -> None:
    assert Version.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2.1.0", "it has 3 parts, not 4"),
        ("2.1.0.3.1", "it has 5 parts, not 4"),
        ("", "it is empty"),
        ("2..0.3", "Y is empty"),
        ("2.1.0.", "B is empty"),
        ("v2.1.0.3", "S 'v2' is not a non-negative integer"),
        ("2.1.-1.3", "Z '-1' is not a non-negative integer"),
        ("2.1.0.x", "B 'x' is not a non-negative integer"),
        ("2.01.0.3", "Y '01' has a leading zero"),
        ("2.1.0.1234567", "B '1234567' has more than 6 digits"),
        (" 2.1.0.3", "S ' 2' is not a non-negative integer"),
        ("2.1.0.٣", "B '٣' is not a non-negative integer"),
    ],
)
def test_malformed_version_is_an_error_naming_input_and_reason(text: str, why: str) -> None:
    with pytest.raises(VersionError) as raised:
        Version.parse(text)
    assert str(raised.value) == f"{text!r} is not a version S.Y.Z.B: {why}"


@given(versions)
def test_str_round_trips_through_parse(version: Version) -> None:
    assert Version.parse(str(version)) == version


@given(versions)
def test_every_printed_version_matches_the_contract_pattern(version: Version) -> None:
    import re

    assert re.fullmatch(VERSION_PATTERN, str(version))


@given(versions, versions)
def test_versions_order_as_their_parts(a: Version, b: Version) -> None:
    assert (a < b) == (a.parts < b.parts)


def test_numeric_not_lexical_order() -> None:
    assert Version.parse("2.10.0.0") > Version.parse("2.9.9.9")


# --- diff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "changed", "most_significant"),
    [
        ("2.1.0.3", "2.1.0.3", (), None),
        ("2.1.0.3", "2.1.0.4", ("B",), "B"),
        ("2.1.0.3", "2.1.1.0", ("Z", "B"), "Z"),
        ("2.1.0.3", "2.2.0.3", ("Y",), "Y"),
        ("2.1.0.3", "3.0.0.0", ("S", "Y", "B"), "S"),
        ("3.0.0.0", "2.9.0.0", ("S", "Y"), "S"),
    ],
)
def test_diff_names_changed_components(
    before: str, after: str, changed: tuple[str, ...], most_significant: str | None
) -> None:
    a, b = Version.parse(before), Version.parse(after)
    assert changed_components(a, b) == changed
    assert most_significant_change(a, b) == most_significant


@pytest.mark.parametrize(
    ("component", "expected"),
    [("S", "major_enhancement"), ("Y", "minor_enhancement"), ("Z", "corrective"), ("B", "bug_fix")],
)
def test_change_class_matches_the_registry_contract(component: str, expected: str) -> None:
    assert change_class(component) == expected  # type: ignore[arg-type]


# --- change records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fraction", "message"),
    [
        (ChangeKind.TRAINING_DATABASE, None, "needs training_fraction_changed"),
        (ChangeKind.TRAINING_DATABASE, 1.5, "within 0-1"),
        (ChangeKind.TRAINING_DATABASE, -0.1, "within 0-1"),
        (ChangeKind.BUG_FIX, 0.1, "has no training_fraction_changed"),
        (ChangeKind.ALGORITHM_FRAMEWORK, 0.1, "has no training_fraction_changed"),
    ],
)
def test_inconsistent_change_record_is_an_error(
    kind: ChangeKind, fraction: float | None, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        ChangeRecord(kind, training_fraction_changed=fraction)


# --- policy decisions ----------------------------------------------------------------------

FRAMEWORK = ChangeRecord(ChangeKind.ALGORITHM_FRAMEWORK, "ResNet to ViT")
DATA_5 = ChangeRecord(ChangeKind.TRAINING_DATABASE, "5 % new cases", 0.05)
DATA_10 = ChangeRecord(ChangeKind.TRAINING_DATABASE, "10 % new cases", 0.10)
DATA_15 = ChangeRecord(ChangeKind.TRAINING_DATABASE, "15 % new cases", 0.15)
DATA_30 = ChangeRecord(ChangeKind.TRAINING_DATABASE, "30 % new cases", 0.30)
BUG_FIX = ChangeRecord(ChangeKind.BUG_FIX, "off-by-one in tiling")
BASE = "2.1.0.3"

# (policy, field version, change record, required, words the reason must contain)
DECISIONS: list[tuple[str, str, ChangeRecord | None, bool, str]] = [
    # nmpa-syzb: S, Y, Z need registration; B does not unless the change is major by kind
    ("nmpa-syzb", "2.1.0.3", None, False, "is the registered version"),
    ("nmpa-syzb", "3.0.0.0", None, True, "S (major enhancement) changed"),
    ("nmpa-syzb", "2.2.0.0", None, True, "Y (minor enhancement) changed"),
    ("nmpa-syzb", "2.1.1.0", None, True, "Z (corrective update) changed"),
    ("nmpa-syzb", "2.1.0.4", None, False, "only B (minor bug fix) changed"),
    ("nmpa-syzb", "2.1.0.4", BUG_FIX, False, "only B"),
    ("nmpa-syzb", "2.1.0.4", DATA_5, False, "only B"),
    ("nmpa-syzb", "2.1.0.4", DATA_10, True, "training database changed by 10% (major"),
    ("nmpa-syzb", "2.1.0.4", DATA_30, True, "whatever the version number says"),
    ("nmpa-syzb", "2.1.0.4", FRAMEWORK, True, "algorithm framework changed (major)"),
    ("nmpa-syzb", "2.1.1.0", BUG_FIX, True, "registers changes in S, Y, Z"),
    ("nmpa-syzb", "2.1.0.2", None, True, "older than the registered one"),
    # strict: every change, B included
    ("strict-every-change", "2.1.0.4", None, True, "only B (minor bug fix) changed"),
    ("strict-every-change", "2.1.0.4", BUG_FIX, True, "registers changes in S, Y, Z, B"),
    ("strict-every-change", "2.1.1.0", DATA_5, True, "Z (corrective update)"),
    ("strict-every-change", "2.2.0.0", FRAMEWORK, True, "Y (minor enhancement)"),
    ("strict-every-change", "3.0.0.0", None, True, "S (major enhancement)"),
    ("strict-every-change", "2.1.0.3", None, False, "is the registered version"),
    # loose: only S; the change record's kind does not matter
    ("loose-major-only", "3.0.0.0", None, True, "registers changes in S"),
    ("loose-major-only", "2.2.0.0", None, False, "registers changes in S"),
    ("loose-major-only", "2.1.1.0", BUG_FIX, False, "Z (corrective update)"),
    ("loose-major-only", "2.1.0.4", DATA_30, False, "only B"),
    ("loose-major-only", "2.2.0.0", FRAMEWORK, False, "Y (minor enhancement)"),
    # fda-pccp: inside the plan (data <= 20 % in Y/Z/B, bug fix in Z/B) needs nothing
    ("fda-pccp", "2.2.0.0", DATA_15, False, "inside the pre-authorised change plan"),
    ("fda-pccp", "2.1.1.0", DATA_5, False, "inside the pre-authorised change plan"),
    ("fda-pccp", "2.2.0.0", DATA_30, True, "outside the pre-authorised change plan"),
    ("fda-pccp", "3.0.0.0", DATA_5, True, "S (major enhancement)"),
    ("fda-pccp", "2.1.1.0", BUG_FIX, False, "bug fix is inside"),
    ("fda-pccp", "2.2.0.0", BUG_FIX, True, "outside the pre-authorised change plan"),
    ("fda-pccp", "2.2.0.0", FRAMEWORK, True, "outside the pre-authorised change plan"),
    ("fda-pccp", "2.1.0.4", FRAMEWORK, True, "algorithm framework changed (major)"),
    ("fda-pccp", "2.2.0.0", None, True, "outside the pre-authorised change plan"),
    ("fda-pccp", "2.1.0.4", None, False, "only B"),
]


@pytest.mark.parametrize(("policy", "field", "record", "required", "words"), DECISIONS)
def test_registration_decision(
    policy: str, field: str, record: ChangeRecord | None, required: bool, words: str
) -> None:
    decision = registration_required(
        Version.parse(BASE), Version.parse(field), record, preset(policy)
    )
    assert (decision.required, words in decision.reason) == (required, True), decision.reason


def test_decision_table_covers_every_preset_and_every_kind() -> None:
    assert {row[0] for row in DECISIONS} == set(PRESETS)
    kinds = {row[2].kind for row in DECISIONS if row[2] is not None}
    assert kinds == set(ChangeKind)


@pytest.mark.parametrize("policy", sorted(PRESETS))
def test_no_registered_version_always_needs_registration(policy: str) -> None:
    decision = registration_required(None, Version.parse("1.0.0.0"), None, preset(policy))
    assert decision.required
    assert "no registered version precedes 1.0.0.0" in decision.reason


@pytest.mark.parametrize(
    ("threshold", "fraction", "required"),
    [(0.10, 0.09, False), (0.10, 0.10, True), (0.20, 0.15, False), (0.20, 0.20, True)],
)
def test_major_training_fraction_is_configurable(
    threshold: float, fraction: float, required: bool
) -> None:
    policy = preset("nmpa-syzb").with_major_training_fraction(threshold)
    record = ChangeRecord(ChangeKind.TRAINING_DATABASE, training_fraction_changed=fraction)
    decision = registration_required(Version(2, 1, 0, 3), Version(2, 1, 0, 4), record, policy)
    assert decision.required is required


# --- policies as configuration -------------------------------------------------------------


def test_policy_from_config_overrides_a_preset() -> None:
    policy = policy_from_config({"preset": "nmpa-syzb", "major_training_fraction": 0.2})
    assert policy.registration_components == frozenset({"S", "Y", "Z"})
    assert policy.major_training_fraction == 0.2


def test_policy_from_config_builds_a_custom_plan() -> None:
    policy = policy_from_config(
        {
            "name": "vendor-plan",
            "registration_components": ["S", "Y", "Z", "B"],
            "plan": {
                "name": "retraining",
                "permitted": [
                    {
                        "kind": "training_database",
                        "version_components": ["B"],
                        "max_training_fraction": 0.05,
                    }
                ],
            },
        }
    )
    inside = registration_required(Version(1, 0, 0, 0), Version(1, 0, 0, 1), DATA_5, policy)
    outside = registration_required(Version(1, 0, 0, 0), Version(1, 0, 0, 1), DATA_10, policy)
    assert (inside.required, outside.required) == (False, True)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"preset": "eu-mdr"}, "unknown change-control preset 'eu-mdr'"),
        ({"registration_components": ["S", "X"]}, "unknown version component 'X'"),
        ({"registration_components": "SYZ"}, "must be a list"),
        ({"preset": "nmpa-syzb", "colour": "red"}, "unknown change-control settings"),
        ({}, "needs a preset or registration_components"),
        ({"preset": "nmpa-syzb", "major_training_fraction": 0}, "within \\(0, 1\\]"),
        ({"preset": "fda-pccp", "plan": {"permitted": [{"kind": "magic"}]}}, "needs a kind"),
    ],
)
def test_bad_policy_config_is_a_clear_error(config: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_config(config)
