"""Which file column feeds which contract field: the replay's column mapping.

A mapping is checked against the contract of the kind replayed and the file's header
before any row is read, so a mapping that cannot work fails with :class:`MappingError`
and nothing is sent.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel

from postmarket import __version__
from postmarket.contracts import FollowUp, Prediction

Kind = Literal["predictions", "followups"]
KINDS: tuple[Kind, ...] = ("predictions", "followups")
CONTRACTS: dict[Kind, type[Prediction] | type[FollowUp]] = {
    "predictions": Prediction,
    "followups": FollowUp,
}
DEFAULT_COLLECTOR_VERSION = f"replay-{__version__}"[:32]
"""Historical files rarely say which software collected them; the replay says it did."""
NOT_MAPPABLE = frozenset({"schema_version", "study_design"})
"""Fields the replay sets itself: the schema it writes and the study's provenance."""

FieldKind = Literal["text", "number", "flag", "time"]
CellValue = str | int | float | bool


class MappingError(ValueError):
    """The column mapping cannot work for this file; raised before any row is sent."""


def field_kinds(contract: type[BaseModel], prefix: str = "") -> dict[str, FieldKind]:
    """Every mappable field of ``contract`` as a dotted path, with the kind of cell it reads.

    >>> field_kinds(Prediction)["acquisition.slice_thickness_mm"]
    'number'
    """
    kinds: dict[str, FieldKind] = {}
    for name, info in contract.model_fields.items():
        if name in NOT_MAPPABLE:
            continue
        leaves = _leaf_types(info.annotation)
        nested = [leaf for leaf in leaves if isinstance(leaf, type) and issubclass(leaf, BaseModel)]
        if nested:
            kinds.update(field_kinds(nested[0], f"{prefix}{name}."))
        elif AwareDatetime in leaves or datetime in leaves:
            kinds[prefix + name] = "time"
        elif bool in leaves:
            kinds[prefix + name] = "flag"
        elif float in leaves or int in leaves:
            kinds[prefix + name] = "number"
        else:
            kinds[prefix + name] = "text"
    return kinds


def _leaf_types(annotation: Any) -> set[Any]:
    """The concrete types inside Optional/Union/Annotated (Literal counts as text)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    if origin is Literal:
        return {str}
    return {annotation}


def required_fields(contract: type[BaseModel]) -> set[str]:
    """Top-level fields a row must provide (``event_id`` is derived when absent)."""
    return (
        {name for name, info in contract.model_fields.items() if info.is_required()}
        - NOT_MAPPABLE
        - {"event_id"}
    )


@dataclass(frozen=True)
class ColumnMapping:
    """Which file column feeds which contract field, and values that hold for every row.

    Fields are dotted contract paths (``score``, ``acquisition.manufacturer``). A field not
    named here is read from the column of the same name when the file has one, so a file
    whose header uses the contract's names needs no mapping at all.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, CellValue] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: Path) -> ColumnMapping:
        """Read ``[columns]`` (field = "column") and ``[constants]`` (field = value).

        Example file::

            [columns]
            case_pseudonym = "PatientPseudonym"
            event_time = "StudyDateTime"
            "acquisition.manufacturer" = "Manufacturer"

            [constants]
            site_id = "site-a"
        """
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise MappingError(f"{path}: {error}") from None
        unknown = set(document) - {"columns", "constants"}
        if unknown:
            raise MappingError(f"{path}: unknown tables {sorted(unknown)} (columns, constants)")
        columns = document.get("columns", {})
        constants = document.get("constants", {})
        if not all(isinstance(v, str) for v in columns.values()):
            raise MappingError(f"{path}: every [columns] value must be a column name (a string)")
        if not all(isinstance(v, str | int | float | bool) for v in constants.values()):
            raise MappingError(f"{path}: [constants] values must be strings, numbers or booleans")
        return cls(columns=dict(columns), constants=dict(constants))

    def overridden(
        self, columns: Mapping[str, str], constants: Mapping[str, CellValue]
    ) -> ColumnMapping:
        """This mapping with ``columns`` and ``constants`` taking precedence field by field."""
        merged_columns = {k: v for k, v in self.columns.items() if k not in constants}
        merged_constants = {k: v for k, v in self.constants.items() if k not in columns}
        return ColumnMapping(
            columns={**merged_columns, **columns}, constants={**merged_constants, **constants}
        )

    def resolve(self, kind: Kind, file_columns: Sequence[str]) -> ResolvedMapping:
        """Check the mapping against the contract and the file's header; fill in defaults."""
        contract = CONTRACTS[kind]
        kinds = field_kinds(contract)
        for source, names in (("column", self.columns), ("constant", self.constants)):
            unknown = sorted(set(names) - set(kinds))
            if unknown:
                raise MappingError(
                    f"{contract.__name__} has no field {', '.join(unknown)} (mapped to a {source});"
                    f" its fields are {', '.join(kinds)}"
                )
        absent = sorted({c for c in self.columns.values() if c not in file_columns})
        if absent:
            raise MappingError(
                f"column {', '.join(map(repr, absent))} is not in the file; it has "
                f"{', '.join(map(repr, file_columns))}"
            )
        columns: dict[str, str] = {}
        for path in kinds:
            if path in self.columns:
                columns[path] = self.columns[path]
            elif path not in self.constants and path in file_columns:
                columns[path] = path
        constants = dict(self.constants)
        if "collector_version" not in columns and "collector_version" not in constants:
            constants["collector_version"] = DEFAULT_COLLECTOR_VERSION
        missing = sorted(required_fields(contract) - set(columns) - set(constants))
        if missing:
            raise MappingError(
                f"no column for required {contract.__name__} field {', '.join(missing)}: name a "
                "column of that name, map one (--column FIELD=COLUMN) or give a constant"
            )
        return ResolvedMapping(kind, columns, constants, kinds)


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping checked against one file: every field's column or constant."""

    kind: Kind
    columns: dict[str, str]
    constants: dict[str, CellValue]
    kinds: dict[str, FieldKind]

    @property
    def file_columns(self) -> list[str]:
        """The file columns to read, each once, in field order."""
        return list(dict.fromkeys(self.columns.values()))

    def source_of(self, field_path: str) -> str | None:
        """The column (or ``constant <field>``) a field came from, for error messages."""
        if field_path in self.columns:
            return self.columns[field_path]
        if field_path in self.constants:
            return f"constant {field_path}"
        return None


def parse_assignments(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``["score=Score", ...]`` from repeated ``--column``/``--constant`` options."""
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise MappingError(f"{option} {pair!r} is not FIELD=VALUE")
        parsed[name.strip()] = value.strip()
    return parsed
