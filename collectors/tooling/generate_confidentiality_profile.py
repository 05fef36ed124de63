"""Generate ``collectors/confidentiality_profile.py`` from maintained machine-readable copies
of DICOM PS3.15 Annex E, Table E.1-1 (Basic Application Level Confidentiality Profile).

Two published copies are combined, each for what it has that the other lacks:

* the **basic profile column** of the newest edition comes from the PyPI package
  ``dicom-anonymizer`` (module ``dicomanonymizer/dicom_anonymization_databases/
  dicomfields_<edition>.py``, maintained by Kitware, regenerated per DICOM edition);
* the **option columns** (Retain Device Identity, Retain Longitudinal Temporal Information
  with Modified Dates, Clean Descriptors, ...) come from the PyPI package ``idiscore``
  (module ``idiscore/_public_dicom.py``, scraped from the NEMA HTML), the only maintained
  copy that carries them. An attribute that is newer than that scrape has no option entry
  and so gets its basic-profile action, which is always the stricter one.

Both inputs are read as source text and parsed with :mod:`ast`; nothing is imported from
them. Run::

    python -m collectors.tooling.generate_confidentiality_profile \
        --dicom-anonymizer PATH_OR_WHEEL --idiscore PATH_OR_WHEEL [-o OUTPUT]

where each input is an installed package directory, a wheel, or the module file itself
(``pip download --no-deps dicom-anonymizer idiscore`` fetches the wheels).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import re
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import keyword_for_tag

DEFAULT_EDITION = "2026c"
ANONYMIZER_MODULE = "dicomanonymizer/dicom_anonymization_databases/dicomfields_{edition}.py"
IDISCORE_MODULE = "idiscore/_public_dicom.py"
OUTPUT = Path(__file__).resolve().parents[1] / "confidentiality_profile.py"

# dicom-anonymizer's list names -> Table E.1-1 action codes.
ANONYMIZER_LISTS = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
# idiscore's ActionCodes attributes -> Table E.1-1 action codes.
IDISCORE_ACTIONS = {
    "DUMMY": "D",
    "EMPTY": "Z",
    "REMOVE": "X",
    "KEEP": "K",
    "CLEAN": "C",
    "UID": "U",
    "EMPTY_OR_DUMMY": "Z/D",
    "REMOVE_OR_EMPTY": "X/Z",
    "REPLACE_OR_DUMMY": "X/Z",
    "REMOVE_OR_DUMMY": "X/D",
    "REMOVE_OR_EMPTY_OR_DUMMY": "X/Z/D",
    "REMOVE_OR_EMPTY_OR_UID": "X/Z/U*",
}
# Option rule sets of idiscore -> (constant name in the generated module, CID 7050 code).
OPTION_NAMES = {
    "retain_safe_private": "RETAIN_SAFE_PRIVATE",
    "retain_uid": "RETAIN_UIDS",
    "retain_device_id": "RETAIN_DEVICE_IDENTITY",
    "retain_institution_id": "RETAIN_INSTITUTION_IDENTITY",
    "retain_patient_characteristics": "RETAIN_PATIENT_CHARACTERISTICS",
    "retain_full_dates": "RETAIN_LONGITUDINAL_FULL_DATES",
    "retain_modified_dates": "RETAIN_LONGITUDINAL_MODIFIED_DATES",
    "clean_descriptors": "CLEAN_DESCRIPTORS",
    "clean_structured_content": "CLEAN_STRUCTURED_CONTENT",
    "clean_graphics": "CLEAN_GRAPHICS",
}


class ProfileSourceError(ValueError):
    """An input is missing or not in the form this generator understands."""


@dataclass(frozen=True)
class SourceText:
    """One input module: its text and where it came from."""

    text: str
    origin: str
    package_version: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class GroupRule:
    """A repeating-group row (e.g. Curve Data 50xx,xxxx): tag & mask == value & mask."""

    group: int
    element: int
    group_mask: int
    element_mask: int
    action: str
    name: str


@dataclass(frozen=True)
class BasicProfile:
    """The basic-profile column: single tags and repeating-group rows."""

    tags: dict[int, tuple[str, str]]  # tag -> (action, name)
    groups: list[GroupRule]


# --- reading the inputs ---------------------------------------------------------------------


def read_source(location: Path, member: str) -> SourceText:
    """``member`` from a wheel, a site-packages directory, or the module file itself."""
    if location.is_file() and location.suffix == ".whl":
        with zipfile.ZipFile(location) as wheel:
            try:
                text = wheel.read(member).decode()
            except KeyError:
                raise ProfileSourceError(f"{location} has no {member}") from None
        version = location.name.split("-")[1]
        return SourceText(text, member, version)
    path = location if location.is_file() else location / member
    if not path.is_file():
        raise ProfileSourceError(f"{path} not found")
    return SourceText(path.read_text(), member, _installed_version(path, member))


def _installed_version(path: Path, member: str) -> str:
    package_root = path
    for _ in member.split("/"):
        package_root = package_root.parent
    top = member.split("/")[0]
    for info in package_root.glob("*.dist-info"):
        metadata = info / "METADATA"
        if not metadata.is_file():
            continue
        fields = dict(
            line.split(": ", 1) for line in metadata.read_text().splitlines() if ": " in line
        )
        record = info / "RECORD"
        owns = record.is_file() and f"{top}/" in record.read_text()
        if owns:
            return fields.get("Version", "unknown")
    return "unknown"


def installed_package_dir(top_level: str) -> Path | None:
    """The site-packages directory holding ``top_level`` (without importing it)."""
    spec = importlib.util.find_spec(top_level)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parents[1]


def _line_comment(lines: Sequence[str], lineno: int) -> str:
    _, _, comment = lines[lineno - 1].partition("#")
    return comment.strip()


def parse_anonymizer(source: SourceText) -> BasicProfile:
    """The basic-profile column from a dicom-anonymizer ``dicomfields_*`` module."""
    tree = ast.parse(source.text)
    lines = source.text.splitlines()
    tags: dict[int, tuple[str, str]] = {}
    groups: list[GroupRule] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name) or target.id not in ANONYMIZER_LISTS:
            continue
        action = ANONYMIZER_LISTS[target.id]
        for item in node.value.elts:
            numbers = ast.literal_eval(item)
            name = _line_comment(lines, item.end_lineno or item.lineno)
            if len(numbers) == 2:
                tag = (numbers[0] << 16) | numbers[1]
                if tag in tags and tags[tag][0] != action:
                    raise ProfileSourceError(f"({numbers[0]:04X},{numbers[1]:04X}) listed twice")
                tags[tag] = (action, name)
            elif len(numbers) == 4:
                group, element, group_mask, element_mask = numbers
                groups.append(GroupRule(group, element, group_mask, element_mask, action, name))
            else:
                raise ProfileSourceError(f"line {item.lineno}: unexpected entry {numbers}")
    if len(tags) < 400:
        raise ProfileSourceError(f"{source.origin}: only {len(tags)} attributes; wrong module?")
    return BasicProfile(tags, groups)


def parse_idiscore(source: SourceText) -> dict[str, dict[int, str]]:
    """Every option column (rule-set variable name -> tag -> action) of idiscore's scrape."""
    tree = ast.parse(source.text)
    options: dict[str, dict[int, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name) or target.id == "basic_profile":
            continue
        rules = next((k.value for k in node.value.keywords if k.arg == "rules"), None)
        if not isinstance(rules, ast.List):
            continue
        column: dict[int, str] = {}
        for rule in rules.elts:
            if not (isinstance(rule, ast.Tuple) and len(rule.elts) == 2):
                raise ProfileSourceError(f"line {rule.lineno}: unexpected rule")
            identifier, action = rule.elts
            if not (
                isinstance(identifier, ast.Call)
                and isinstance(identifier.func, ast.Name)
                and isinstance(action, ast.Attribute)
            ):
                raise ProfileSourceError(f"line {rule.lineno}: unexpected rule")
            if identifier.func.id != "SingleTag":
                continue  # private tags and repeating groups: handled by the basic profile
            tag_hex = ast.literal_eval(identifier.args[0])
            column[int(tag_hex, 16)] = IDISCORE_ACTIONS[action.attr]
        options[target.id] = column
    missing = set(OPTION_NAMES) - set(options)
    if missing:
        raise ProfileSourceError(f"{source.origin}: option columns missing: {sorted(missing)}")
    return options


def scrape_note(source: SourceText) -> str:
    """The 'scrape date' line of idiscore's module header."""
    match = re.search(r"scrape date:\s*(\S+)", source.text)
    return match.group(1) if match else "unknown"


# --- rendering ------------------------------------------------------------------------------


def _name(tag: int, fallback: str) -> str:
    keyword = keyword_for_tag(tag)
    return keyword or fallback or "unknown"


def _tag_lines(table: dict[int, str], names: dict[int, str]) -> list[str]:
    return [
        f'    0x{tag:08X}: "{action}",  # {_name(tag, names.get(tag, ""))}'
        for tag, action in sorted(table.items())
    ]


def render(anonymizer: SourceText, idiscore: SourceText, edition: str) -> str:
    """The complete text of the generated module."""
    basic = parse_anonymizer(anonymizer)
    options = parse_idiscore(idiscore)
    names = {tag: name for tag, (_, name) in basic.tags.items()}
    out = [
        '"""DICOM PS3.15 Annex E, Table E.1-1: Basic Application Level Confidentiality Profile.',
        "",
        "GENERATED by collectors/tooling/generate_confidentiality_profile.py; do not edit.",
        "",
        f"Basic profile column: DICOM {edition}, from the PyPI package dicom-anonymizer",
        f"{anonymizer.package_version} (Kitware), module {anonymizer.origin}.",
        f"Option columns: from the PyPI package idiscore {idiscore.package_version}, module",
        f"{idiscore.origin}, scraped from the NEMA HTML of PS3.15 on {scrape_note(idiscore)}.",
        "Attributes newer than that scrape have no option entry and keep their basic action.",
        "Actions: D dummy, Z empty, X remove, K keep, C clean, U keyed UID; 'X/Z' etc. are",
        "alternatives the de-identifier chooses between.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f'EDITION = "{edition}"',
        f'BASIC_PROFILE_PACKAGE = "dicom-anonymizer=={anonymizer.package_version}"',
        f'BASIC_PROFILE_MODULE = "{anonymizer.origin}"',
        f'BASIC_PROFILE_SHA256 = "{anonymizer.sha256}"',
        f'OPTIONS_PACKAGE = "idiscore=={idiscore.package_version}"',
        f'OPTIONS_MODULE = "{idiscore.origin}"',
        f'OPTIONS_SHA256 = "{idiscore.sha256}"',
        f'OPTIONS_SCRAPED = "{scrape_note(idiscore)}"',
        "",
        "BASIC_PROFILE: dict[int, str] = {",
        *_tag_lines({tag: action for tag, (action, _) in basic.tags.items()}, names),
        "}",
        '"""Tag (group << 16 | element) -> action of the basic profile."""',
        "",
        "BASIC_PROFILE_REPEATING_GROUPS: tuple[tuple[int, int, str], ...] = (",
    ]
    for rule in sorted(basic.groups, key=lambda r: (r.group, r.element)):
        value = (rule.group << 16) | rule.element
        mask = (rule.group_mask << 16) | rule.element_mask
        out.append(f'    (0x{mask:08X}, 0x{value:08X}, "{rule.action}"),  # {rule.name}')
    out += [
        ")",
        '"""(mask, value, action): a tag matches when ``tag & mask == value``."""',
    ]
    for variable, constant in OPTION_NAMES.items():
        column = _tag_lines(options[variable], names)
        if column:
            out += ["", f"{constant}: dict[int, str] = {{", *column, "}"]
        else:
            out += ["", f"{constant}: dict[int, str] = {{}}"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dicom-anonymizer", type=Path, help="wheel, package dir or module")
    parser.add_argument("--idiscore", type=Path, required=True, help="wheel, package dir or module")
    parser.add_argument("--edition", default=DEFAULT_EDITION)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    location = args.dicom_anonymizer or installed_package_dir("dicomanonymizer")
    if location is None:
        parser.error("dicom-anonymizer is not installed; pass --dicom-anonymizer WHEEL")
    edition = args.edition
    try:
        anonymizer = read_source(location, ANONYMIZER_MODULE.format(edition=edition))
        idiscore = read_source(args.idiscore, IDISCORE_MODULE)
        text = render(anonymizer, idiscore, edition)
    except ProfileSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
