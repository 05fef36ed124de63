"""Change control of the registry itself: which registration status changes, and which claim
changes, a regulator accepts. Pure: the store asks these functions before it writes.

A version's registration moves ``unregistered -> pending -> registered -> withdrawn``. A
registration is never undone, only withdrawn, so the registry keeps saying a version was
registered once; and a withdrawn version comes back only through a new registration entry
(a new submission or certificate number), never by resetting its old one. Claims are the
registration testing's results: a withdrawn version's claims are history and stay as they
are, and a registered version's claim is amended or withdrawn only with a reason, which the
audit trail keeps beside the old value.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

REGISTRATION_STATUSES = ("registered", "pending", "unregistered", "withdrawn")
"""As :class:`~postmarket.contracts.events.RegistryEntry` publishes them."""

STATUS_CHANGES: dict[str, frozenset[str]] = {
    "unregistered": frozenset({"pending", "registered"}),
    "pending": frozenset({"registered", "unregistered"}),
    "registered": frozenset({"withdrawn"}),
    "withdrawn": frozenset({"pending", "registered"}),
}
"""The registration statuses each status may move to."""

_WHY_NOT: dict[tuple[str, str], str] = {
    ("registered", "pending"): "a registration is never undone: withdraw it",
    ("registered", "unregistered"): "a registration is never undone: withdraw it",
    ("pending", "withdrawn"): (
        "only a registration is withdrawn; a refused or retracted submission goes back to "
        "unregistered"
    ),
    ("unregistered", "withdrawn"): "only a registration is withdrawn",
    ("withdrawn", "unregistered"): (
        "the version was registered once and withdrawn says so; register it anew with "
        "pending or registered and a new --reference"
    ),
}


class RegistryChangeRefused(ValueError):
    """A registry change that change control forbids; the message says why and what to do."""


def check_status_change(
    current: str, target: str, *, reference_on_record: str, new_reference: str
) -> None:
    """Raise :class:`RegistryChangeRefused` unless ``current -> target`` is allowed.

    ``new_reference`` is the submission or certificate number given with the change (empty
    if none). Leaving ``withdrawn`` is a new registration entry: it needs a new reference,
    not the withdrawn one. ``registered`` needs a reference, given now or on record.

    >>> check_status_change("pending", "registered", reference_on_record="", new_reference="R-1")
    >>> check_status_change("withdrawn", "registered", reference_on_record="R-1",
    ...                     new_reference="R-1")
    Traceback (most recent call last):
    ...
    evidence.registration.RegistryChangeRefused: withdrawn -> registered needs a new registration entry: give --reference with the new submission or certificate number (R-1 is the withdrawn one)
    """  # noqa: E501 - a doctest's expected output is one line
    if target not in REGISTRATION_STATUSES:
        raise RegistryChangeRefused(
            f"unknown registration status {target!r}; use one of {', '.join(REGISTRATION_STATUSES)}"
        )
    if current == target:
        raise RegistryChangeRefused(f"the version is already {target}")
    if target not in STATUS_CHANGES.get(current, frozenset()):
        allowed = " or ".join(sorted(STATUS_CHANGES.get(current, frozenset()))) or "nothing"
        why = _WHY_NOT.get((current, target), f"{current} may only become {allowed}")
        raise RegistryChangeRefused(f"cannot change {current} -> {target}: {why}")
    if current == "withdrawn" and (not new_reference or new_reference == reference_on_record):
        withdrawn = f" ({reference_on_record} is the withdrawn one)" if reference_on_record else ""
        raise RegistryChangeRefused(
            f"withdrawn -> {target} needs a new registration entry: give --reference with the "
            f"new submission or certificate number{withdrawn}"
        )
    if target == "registered" and not (new_reference or reference_on_record):
        raise RegistryChangeRefused(
            "registered needs the registration certificate number: give --reference"
        )


def check_claim_change(status: str, change: str, why: str) -> None:
    """Raise :class:`RegistryChangeRefused` unless a version in ``status`` may have a claim
    ``change``d (``amend`` or ``withdraw``) for reason ``why``.

    >>> check_claim_change("pending", "amend", "")
    >>> check_claim_change("registered", "amend", " ")
    Traceback (most recent call last):
    ...
    evidence.registration.RegistryChangeRefused: a claim of a registered version is changed only with a reason: give --why
    """  # noqa: E501 - a doctest's expected output is one line
    if status == "withdrawn":
        raise RegistryChangeRefused(
            f"cannot {change} a claim of a withdrawn version: its claims are the withdrawn "
            "registration's record; register a new version for new claims"
        )
    if status == "registered" and not why.strip():
        raise RegistryChangeRefused(
            "a claim of a registered version is changed only with a reason: give --why"
        )


GateRequirement = Literal["none", "registration", "deployment"]
"""Which registration statuses need a passing standard test database gate (the
``gate_required_for`` setting): ``none``; ``registration``: submitting (``pending``) and
registering; ``deployment``: registering, the status that lets the fleet run a version
(a submission may precede the gate)."""

GATED_STATUSES: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "registration": frozenset({"pending", "registered"}),
    "deployment": frozenset({"registered"}),
}


class GateOutcome(NamedTuple):
    """A version's latest gate run: its id and whether it passed."""

    run_id: str
    passed: bool


def gate_problem(
    required_for: GateRequirement, target: str, latest_gate: GateOutcome | None
) -> str | None:
    """Why a version may not move to ``target`` without a passing gate, or None.

    ``latest_gate`` is the version's latest gate run (None: never run). Only the latest
    counts, so a failing re-run revokes an earlier pass.

    >>> gate_problem("deployment", "pending", None) is None
    True
    >>> gate_problem("deployment", "registered", GateOutcome("5f0c", passed=True)) is None
    True
    >>> print(gate_problem("registration", "pending", GateOutcome("5f0c", passed=False)))
    pending needs a passing standard test database gate (gate_required_for = registration): the latest run, 5f0c, failed
    """  # noqa: E501 - a doctest's expected output is one line
    if target not in GATED_STATUSES.get(required_for, frozenset()):
        return None
    needed = (
        f"{target} needs a passing standard test database gate (gate_required_for = {required_for})"
    )
    if latest_gate is None:
        return f"{needed}: run `postmarket testdb run` first"
    if not latest_gate.passed:
        return f"{needed}: the latest run, {latest_gate.run_id}, failed"
    return None
