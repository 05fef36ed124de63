"""Device versions S.Y.Z.B and the change-control rules that say which changes need registration.

A medical-AI device's software version has four parts: **S** major enhancement, **Y** minor
enhancement, **Z** corrective update/build and **B** minor bug fix. Regulators differ in which
changes need a change registration before the version may run in hospitals, so the rule is a
:class:`ChangeControlPolicy` (configuration, with presets) and the decision is one pure
function, :func:`registration_required`, that the registry, the stream worker and the report
all share. Nothing here imports SQLAlchemy, Kafka or Faust.

>>> policy = preset("nmpa-syzb")
>>> decision = registration_required(
...     Version.parse("2.1.0.3"), Version.parse("2.2.0.0"), None, policy
... )
>>> decision.required
True
>>> print(decision.reason)
Y (minor enhancement) changed, 2.1.0.3 -> 2.2.0.0; policy nmpa-syzb registers changes in S, Y, Z
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "COMPONENTS",
    "DEFAULT_MAJOR_TRAINING_FRACTION",
    "PRESETS",
    "ChangeControlPlan",
    "ChangeControlPolicy",
    "ChangeKind",
    "ChangeRecord",
    "Component",
    "Decision",
    "PlannedChange",
    "PolicyError",
    "Version",
    "VersionError",
    "change_class",
    "changed_components",
    "is_major_change",
    "most_significant_change",
    "policy_from_config",
    "preset",
    "registration_required",
]

Component = Literal["S", "Y", "Z", "B"]
"""One part of a version, most significant first."""

COMPONENTS: tuple[Component, ...] = ("S", "Y", "Z", "B")

COMPONENT_MEANING: dict[Component, str] = {
    "S": "major enhancement",
    "Y": "minor enhancement",
    "Z": "corrective update",
    "B": "minor bug fix",
}

ChangeClass = Literal["major_enhancement", "minor_enhancement", "corrective", "bug_fix"]

_CHANGE_CLASS: dict[Component, ChangeClass] = {
    "S": "major_enhancement",
    "Y": "minor_enhancement",
    "Z": "corrective",
    "B": "bug_fix",
}

DEFAULT_MAJOR_TRAINING_FRACTION = 0.10
"""A change of this fraction of the training database or more is a major change (10-20 %)."""

_PART = re.compile(r"0|[1-9]\d{0,5}")


class VersionError(ValueError):
    """A version string that is not S.Y.Z.B; the message names the input and what is wrong."""


class PolicyError(ValueError):
    """A change-control policy, plan or change record that cannot be applied as configured."""


@dataclass(frozen=True, order=True)
class Version:
    """A parsed S.Y.Z.B version; instances order as the versions do (2.10.0.0 > 2.9.0.0)."""

    major: int
    minor: int
    corrective: int
    bugfix: int

    def __post_init__(self) -> None:
        for name, part in zip(COMPONENTS, self.parts, strict=True):
            if part < 0:
                raise VersionError(f"version part {name} must not be negative, got {part}")

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``"S.Y.Z.B"``: four dot-separated non-negative integers without leading zeros.

        >>> Version.parse("2.10.0.1") > Version.parse("2.9.3.7")
        True
        >>> Version.parse("2.1.0")
        Traceback (most recent call last):
        ...
        postmarket.versions.VersionError: '2.1.0' is not a version S.Y.Z.B: it has 3 parts, not 4
        """
        if not isinstance(text, str):
            raise VersionError(f"{text!r} is not a version S.Y.Z.B: it is not a string")
        if text == "":
            raise VersionError("'' is not a version S.Y.Z.B: it is empty")
        parts = text.split(".")
        if len(parts) != len(COMPONENTS):
            raise VersionError(
                f"{text!r} is not a version S.Y.Z.B: it has {len(parts)} parts, not 4"
            )
        for name, part in zip(COMPONENTS, parts, strict=True):
            if not _PART.fullmatch(part):
                raise VersionError(f"{text!r} is not a version S.Y.Z.B: {name} {_why_bad(part)}")
        major, minor, corrective, bugfix = (int(part) for part in parts)
        return cls(major, minor, corrective, bugfix)

    @property
    def parts(self) -> tuple[int, int, int, int]:
        return (self.major, self.minor, self.corrective, self.bugfix)

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.parts)


def _why_bad(part: str) -> str:
    if part == "":
        return "is empty"
    if not part.isascii() or not part.isdigit():
        return f"{part!r} is not a non-negative integer"
    if part.startswith("0"):
        return f"{part!r} has a leading zero"
    return f"{part!r} has more than 6 digits"


def changed_components(previous: Version, current: Version) -> tuple[Component, ...]:
    """Which parts differ between two versions, most significant first."""
    return tuple(
        name
        for name, before, after in zip(COMPONENTS, previous.parts, current.parts, strict=True)
        if before != after
    )


def most_significant_change(previous: Version, current: Version) -> Component | None:
    """The most significant part that differs (what the change is), or None if equal."""
    changed = changed_components(previous, current)
    return changed[0] if changed else None


def change_class(component: Component) -> ChangeClass:
    """The registry's change class of a change in ``component`` (S -> major_enhancement...)."""
    return _CHANGE_CLASS[component]


class ChangeKind(StrEnum):
    """What a change record says was changed in the device, whatever its version number says."""

    ALGORITHM_FRAMEWORK = "algorithm_framework"
    TRAINING_DATABASE = "training_database"
    BUG_FIX = "bug_fix"


@dataclass(frozen=True)
class ChangeRecord:
    """The manufacturer's description of what changed to make a version.

    ``training_fraction_changed`` (0-1) is required for a training-database change and
    meaningless for the others.
    """

    kind: ChangeKind
    description: str = ""
    training_fraction_changed: float | None = None

    def __post_init__(self) -> None:
        fraction = self.training_fraction_changed
        if self.kind is ChangeKind.TRAINING_DATABASE:
            if fraction is None:
                raise PolicyError("a training-database change needs training_fraction_changed")
            if not 0.0 <= fraction <= 1.0:
                raise PolicyError(f"training_fraction_changed must be within 0-1, got {fraction}")
        elif fraction is not None:
            raise PolicyError(f"a {self.kind.value} change has no training_fraction_changed")

    def summary(self, major_fraction: float) -> str:
        """One phrase for decision reasons, e.g. ``training database changed by 25 % (major)``."""
        if self.kind is ChangeKind.TRAINING_DATABASE:
            assert self.training_fraction_changed is not None  # noqa: S101 - checked in init
            size = "major" if self.training_fraction_changed >= major_fraction else "minor"
            return (
                f"training database changed by {self.training_fraction_changed:.0%} "
                f"({size}: threshold {major_fraction:.0%})"
            )
        if self.kind is ChangeKind.ALGORITHM_FRAMEWORK:
            return "algorithm framework changed (major)"
        return "bug fix"


def is_major_change(record: ChangeRecord, major_fraction: float) -> bool:
    """Whether a change is major by its kind: a new algorithm framework, or retraining on
    ``major_fraction`` or more of a changed training database."""
    if record.kind is ChangeKind.ALGORITHM_FRAMEWORK:
        return True
    if record.kind is ChangeKind.TRAINING_DATABASE:
        assert record.training_fraction_changed is not None  # noqa: S101 - checked in init
        return record.training_fraction_changed >= major_fraction
    return False


@dataclass(frozen=True)
class PlannedChange:
    """One kind of change a pre-authorised plan allows, and its bounds.

    ``version_components`` are the version parts the change may move (a planned retraining
    may bump Y, Z or B but never S); ``max_training_fraction`` bounds a training-database
    change.
    """

    kind: ChangeKind
    version_components: frozenset[Component]
    max_training_fraction: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.version_components) - set(COMPONENTS)
        if unknown:
            raise PolicyError(f"unknown version components {sorted(unknown)}; use S, Y, Z, B")
        bound = self.max_training_fraction
        if self.kind is ChangeKind.TRAINING_DATABASE and bound is None:
            raise PolicyError("a planned training-database change needs max_training_fraction")
        if bound is not None and not 0.0 <= bound <= 1.0:
            raise PolicyError(f"max_training_fraction must be within 0-1, got {bound}")

    def permits(self, component: Component, record: ChangeRecord) -> bool:
        if record.kind is not self.kind or component not in self.version_components:
            return False
        if self.max_training_fraction is None:
            return True
        fraction = record.training_fraction_changed
        return fraction is not None and fraction <= self.max_training_fraction


@dataclass(frozen=True)
class ChangeControlPlan:
    """A predetermined change control plan (FDA PCCP): changes authorised in advance."""

    name: str
    permitted: tuple[PlannedChange, ...]

    def permits(self, component: Component, record: ChangeRecord) -> bool:
        return any(planned.permits(component, record) for planned in self.permitted)


@dataclass(frozen=True)
class ChangeControlPolicy:
    """Which changes need a change registration before the version may run in the field.

    - ``registration_components``: a change in any of these version parts needs registration;
    - ``major_changes_need_registration``: a change record that is major by its kind (new
      algorithm framework, retraining on ``major_training_fraction`` or more of the training
      database) needs registration even if the version number understates it;
    - ``plan``: a pre-authorised change plan; a recorded change inside it needs none.
    """

    name: str
    registration_components: frozenset[Component]
    major_changes_need_registration: bool = True
    major_training_fraction: float = DEFAULT_MAJOR_TRAINING_FRACTION
    plan: ChangeControlPlan | None = None
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.registration_components) - set(COMPONENTS)
        if unknown:
            raise PolicyError(f"unknown version components {sorted(unknown)}; use S, Y, Z, B")
        if not 0.0 < self.major_training_fraction <= 1.0:
            raise PolicyError(
                f"major_training_fraction must be within (0, 1], got {self.major_training_fraction}"
            )

    def with_major_training_fraction(self, fraction: float) -> ChangeControlPolicy:
        """This policy with another major-change threshold (10-20 % in the source material)."""
        return replace(self, major_training_fraction=fraction)

    def registered_components_text(self) -> str:
        return ", ".join(c for c in COMPONENTS if c in self.registration_components) or "none"


@dataclass(frozen=True)
class Decision:
    """Whether a field version needs a change registration, and why (for alerts and reports)."""

    required: bool
    reason: str


_FDA_PLAN = ChangeControlPlan(
    name="default-pccp",
    permitted=(
        PlannedChange(
            ChangeKind.TRAINING_DATABASE,
            frozenset({"Y", "Z", "B"}),
            max_training_fraction=0.20,
        ),
        PlannedChange(ChangeKind.BUG_FIX, frozenset({"Z", "B"})),
    ),
)

PRESETS: Mapping[str, ChangeControlPolicy] = {
    policy.name: policy
    for policy in (
        ChangeControlPolicy(
            name="nmpa-syzb",
            registration_components=frozenset({"S", "Y", "Z"}),
            description="NMPA: changes in S, Y or Z need change registration, B does not",
        ),
        ChangeControlPolicy(
            name="strict-every-change",
            registration_components=frozenset(COMPONENTS),
            description="every change, minor bug fixes included, needs change registration",
        ),
        ChangeControlPolicy(
            name="loose-major-only",
            registration_components=frozenset({"S"}),
            major_changes_need_registration=False,
            description="only a major enhancement (S) needs change registration",
        ),
        ChangeControlPolicy(
            name="fda-pccp",
            registration_components=frozenset({"S", "Y", "Z"}),
            plan=_FDA_PLAN,
            description=(
                "FDA PCCP style: changes inside the pre-authorised plan (retraining on up to "
                "20 % new data bumping Y, Z or B; bug fixes bumping Z or B) need no new "
                "submission; anything else in S, Y or Z does"
            ),
        ),
    )
}


def preset(name: str) -> ChangeControlPolicy:
    """A preset policy by name (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise PolicyError(f"unknown change-control preset {name!r}; known: {known}") from None


def policy_from_config(config: Mapping[str, Any]) -> ChangeControlPolicy:
    """A policy from configuration (a TOML table), starting from a preset or from scratch.

    Keys: ``preset`` (optional), ``name``, ``registration_components`` (list of S/Y/Z/B),
    ``major_changes_need_registration``, ``major_training_fraction`` and ``plan`` (a table
    with ``name`` and ``permitted``: a list of tables with ``kind``, ``version_components``,
    ``max_training_fraction``).

    >>> policy_from_config({"preset": "nmpa-syzb", "major_training_fraction": 0.2})
    ... # doctest: +ELLIPSIS
    ChangeControlPolicy(name='nmpa-syzb', ..., major_training_fraction=0.2, ...)
    """
    known = {
        "preset",
        "name",
        "registration_components",
        "major_changes_need_registration",
        "major_training_fraction",
        "plan",
        "description",
    }
    unknown = set(config) - known
    if unknown:
        raise PolicyError(f"unknown change-control settings {sorted(unknown)}")
    if "preset" in config:
        policy = preset(str(config["preset"]))
    elif "registration_components" in config:
        policy = ChangeControlPolicy(
            name=str(config.get("name", "custom")),
            registration_components=_components(config["registration_components"]),
        )
    else:
        raise PolicyError("a change-control policy needs a preset or registration_components")
    changes: dict[str, Any] = {}
    if "name" in config:
        changes["name"] = str(config["name"])
    if "registration_components" in config:
        changes["registration_components"] = _components(config["registration_components"])
    if "major_changes_need_registration" in config:
        changes["major_changes_need_registration"] = bool(config["major_changes_need_registration"])
    if "major_training_fraction" in config:
        changes["major_training_fraction"] = float(config["major_training_fraction"])
    if "description" in config:
        changes["description"] = str(config["description"])
    if "plan" in config:
        changes["plan"] = _plan(config["plan"])
    return replace(policy, **changes)


def _components(value: Any) -> frozenset[Component]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PolicyError(f"version components must be a list of S, Y, Z, B; got {value!r}")
    chosen: set[Component] = set()
    for item in value:
        if item not in COMPONENTS:
            raise PolicyError(f"unknown version component {item!r}; use S, Y, Z, B")
        chosen.add(item)
    return frozenset(chosen)


def _plan(value: Any) -> ChangeControlPlan:
    if not isinstance(value, Mapping):
        raise PolicyError(f"a change plan must be a table, got {value!r}")
    permitted = []
    for entry in value.get("permitted", ()):
        try:
            kind = ChangeKind(entry["kind"])
        except (KeyError, ValueError):
            kinds = ", ".join(kind.value for kind in ChangeKind)
            raise PolicyError(f"a planned change needs a kind ({kinds}); got {entry!r}") from None
        bound = entry.get("max_training_fraction")
        permitted.append(
            PlannedChange(
                kind,
                _components(entry.get("version_components", ())),
                None if bound is None else float(bound),
            )
        )
    return ChangeControlPlan(name=str(value.get("name", "plan")), permitted=tuple(permitted))


def registration_required(
    previous_registered: Version | None,
    field_version: Version,
    change_record: ChangeRecord | None,
    policy: ChangeControlPolicy,
) -> Decision:
    """Whether ``field_version`` needs a change registration under ``policy``, and why.

    ``previous_registered`` is the registered version the field version derives from (the
    newest registered version not newer than it), or None if no version of the device is
    registered; ``change_record`` is the manufacturer's record of what changed, if any.
    Rules, first match wins: the registered version itself needs nothing; no registered
    base, or a rollback below it, needs registration; a recorded change inside the policy's
    pre-authorised plan needs none; a change in a registered component needs registration;
    a recorded change that is major by its kind needs registration if the policy says so.
    """
    if previous_registered is None:
        return Decision(True, f"no registered version precedes {field_version}")
    transition = f"{previous_registered} -> {field_version}"
    component = most_significant_change(previous_registered, field_version)
    if component is None:
        return Decision(False, f"{field_version} is the registered version")
    if field_version < previous_registered:
        return Decision(True, f"{transition} goes back to a version older than the registered one")
    what = f"{component} ({COMPONENT_MEANING[component]}) changed, {transition}"
    if component == "B":
        what = f"only {what}"
    threshold = policy.major_training_fraction
    if (
        policy.plan is not None
        and change_record is not None
        and policy.plan.permits(component, change_record)
    ):
        return Decision(
            False,
            f"{what}: {change_record.summary(threshold)} is inside the pre-authorised "
            f"change plan {policy.plan.name} of policy {policy.name}",
        )
    if component in policy.registration_components:
        outside = ""
        if policy.plan is not None:
            outside = f", outside the pre-authorised change plan {policy.plan.name}"
        return Decision(
            True,
            f"{what}{outside}; policy {policy.name} registers changes in "
            f"{policy.registered_components_text()}",
        )
    if (
        change_record is not None
        and policy.major_changes_need_registration
        and is_major_change(change_record, threshold)
    ):
        return Decision(
            True,
            f"{what} but the change record says {change_record.summary(threshold)}; policy "
            f"{policy.name} registers major changes whatever the version number says",
        )
    return Decision(
        False,
        f"{what}; policy {policy.name} registers changes in {policy.registered_components_text()}",
    )
