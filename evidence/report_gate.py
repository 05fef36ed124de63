"""The standard test database gate as the report and the PSUR show it: every stored verdict
of the device's versions, and whether each version was registered after a passing gate.

The verdicts are read back from the store as the gate stored them
(:mod:`~evidence.testdb_gate_store`), never recomputed. Whether a registration
followed a passing gate is read from the audit trail, in the order its entries were
chained: the latest ``testdb.gate`` entry of the version before the entry that made it
registered is the gate the registry judged it by, as ``registry set-status`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from evidence.audit import AuditRecord
from evidence.store import DeviceView, EvidenceStore
from evidence.testdb_gate import CRITERIA
from evidence.testdb_gate_store import GateRun, device_runs

__all__ = [
    "GateEvidence",
    "GateRegistration",
    "criterion_sentence",
    "gate_evidence",
    "gate_registrations",
]

_SET_STATUS = "registry.set_registration_status"
_ADD_VERSION = "registry.add_version"
_GATE = "testdb.gate"


@dataclass(frozen=True)
class GateRegistration:
    """One version of the device: its registration and the gate it was registered after."""

    version: str
    status: str
    registered_at: datetime | None
    """When the audit trail last recorded the version becoming registered; None: never."""
    gate_run_id: str | None
    """The version's latest gate run before that registration (None: none ran before it)."""
    gate_passed: bool | None

    @property
    def after_passing_gate(self) -> bool | None:
        """Whether it was registered after a passing gate; None: it was never registered."""
        if self.registered_at is None:
            return None
        return self.gate_passed is True

    def sentence(self) -> str:
        if self.registered_at is None:
            return f"not registered ({self.status})"
        if self.gate_run_id is None:
            return "registered with no gate run before it"
        if self.gate_passed:
            return f"registered after passing gate run {self.gate_run_id[:8]}"
        return f"registered although its latest gate run, {self.gate_run_id[:8]}, had failed"


@dataclass(frozen=True)
class GateEvidence:
    """The gate runs the report shows, the period they were taken from, and the versions."""

    runs: tuple[GateRun, ...] = ()
    registrations: tuple[GateRegistration, ...] = ()
    same_inputs_as: tuple[tuple[str, str], ...] = ()
    """(run id, earlier run id with the same inputs), from the runs' audit entries."""
    period: tuple[datetime, datetime] | None = None
    """``[start, end)`` the runs were taken from; None: every run of the device."""

    def earlier_run(self, run_id: str) -> str | None:
        return dict(self.same_inputs_as).get(run_id)

    def registration_sentence(self) -> str:
        """How many of the versions ever registered were registered without a passing gate
        (the latest run before the registration failed, or none ran), in one line.

        >>> from datetime import UTC
        >>> at = datetime(2026, 5, 1, tzinfo=UTC)
        >>> GateEvidence(registrations=(
        ...     GateRegistration("1.0.0.0", "registered", at, None, None),
        ...     GateRegistration("1.1.0.0", "registered", at, "5f0c2a9e", True),
        ...     GateRegistration("1.2.0.0", "unregistered", None, "77aa01b2", False),
        ... )).registration_sentence()
        'Registered without a passing gate: 1 of 2 registered versions (1.0.0.0).'
        """
        registered = [r for r in self.registrations if r.registered_at is not None]
        if not registered:
            return "Registered without a passing gate: none (no version was registered)."
        without = [r.version for r in registered if not r.after_passing_gate]
        shown = f" ({', '.join(without)})" if without else ""
        return (
            f"Registered without a passing gate: {len(without) or 'none'} of {len(registered)} "
            f"registered version{'s' if len(registered) != 1 else ''}{shown}."
        )

    def none_sentence(self) -> str:
        """What the section says when no verdict is stored."""
        where = (
            ""
            if self.period is None
            else f" between {self.period[0]:%Y-%m-%d} and {self.period[1]:%Y-%m-%d} (excluded)"
        )
        return (
            f"No standard test database gate verdict is stored for this device{where}: no "
            "version was gated with `postmarket testdb run`."
        )


def gate_evidence(
    store: EvidenceStore,
    device: DeviceView,
    start: datetime | None = None,
    end: datetime | None = None,
    audit: Sequence[AuditRecord] | None = None,
) -> GateEvidence:
    """Every stored gate run of ``device`` (in ``[start, end)`` when both are given), and
    the registration of each of its versions; ``audit`` is the trail if already read."""
    period = (start, end) if start is not None and end is not None else None
    runs = device_runs(store, device.device_id, *(period or (None, None)))
    trail = store.audit_entries() if audit is None else audit
    statuses = {str(v.version): v.registration_status for v in device.versions}
    earlier = []
    for entry in trail:
        if entry.action == _GATE and entry.subject.startswith(f"device:{device.device_id}/"):
            payload = json.loads(entry.payload)
            if payload.get("same_inputs_as"):
                earlier.append((str(payload["run_id"]), str(payload["same_inputs_as"])))
    shown = {run.run_id for run in runs}
    return GateEvidence(
        runs=tuple(runs),
        registrations=tuple(gate_registrations(device.device_id, statuses, trail)),
        same_inputs_as=tuple(pair for pair in earlier if pair[0] in shown),
        period=period,
    )


def gate_registrations(
    device_id: str, statuses: dict[str, str], trail: Iterable[AuditRecord]
) -> list[GateRegistration]:
    """Per version (as ``statuses`` names them, version -> current registration status),
    the latest registration in ``trail`` and the latest gate run chained before it.

    >>> from evidence.audit import chain_entry
    >>> from datetime import UTC
    >>> at = datetime(2026, 5, 1, tzinfo=UTC)
    >>> gate = chain_entry(None, at, "qa", "testdb.gate", "device:d/version:1.0.0.0",
    ...                    {"run_id": "5f0c2a9e-...", "passed": True})
    >>> registered = chain_entry(gate, at, "ra", "registry.set_registration_status",
    ...                          "device:d/version:1.0.0.0", {"to": "registered"})
    >>> gate_registrations("d", {"1.0.0.0": "registered"}, [gate, registered])[0].sentence()
    'registered after passing gate run 5f0c2a9e'
    """
    latest_gate: dict[str, tuple[str, bool]] = {}
    registered: dict[str, tuple[datetime, tuple[str, bool] | None]] = {}
    prefix = f"device:{device_id}/version:"
    for entry in sorted(trail, key=lambda e: e.sequence):
        if not entry.subject.startswith(prefix):
            continue
        version = entry.subject.removeprefix(prefix)
        if entry.action not in (_GATE, _SET_STATUS, _ADD_VERSION):
            continue
        payload = json.loads(entry.payload)
        if entry.action == _GATE:
            latest_gate[version] = (str(payload["run_id"]), bool(payload["passed"]))
        elif payload.get("to" if entry.action == _SET_STATUS else "status") == "registered":
            when = datetime.fromisoformat(entry.recorded_at)
            registered[version] = (when, latest_gate.get(version))
    rows = []
    for version, status in statuses.items():
        if version not in registered:
            rows.append(GateRegistration(version, status, None, None, None))
            continue
        when, gate = registered[version]
        run_id, passed = gate if gate is not None else (None, None)
        rows.append(GateRegistration(version, status, when, run_id, passed))
    return rows


def criterion_sentence(policy: dict[str, object]) -> str:
    """The pre-specified acceptance criterion of a run, from its stored policy."""
    acceptable = {
        "ci_lower": "each claim's lower confidence bound",
        "point_estimate": "each claim's point estimate",
    }.get(str(policy.get("acceptable")), str(policy.get("acceptable")))
    coverage = 1.0 - float(str(policy.get("alpha", 0.05)))
    parts = [
        f"acceptable level: {acceptable}",
        f"overall: {CRITERIA.get(str(policy.get('overall_criterion')), '?')}",
        f"per stratum: {CRITERIA.get(str(policy.get('stratum_criterion')), '?')}",
        f"{coverage:.0%} {policy.get('interval')} intervals",
        f"funnel {float(str(policy.get('funnel_coverage', 0.998))):.1%}",
    ]
    max_i2, min_kappa = policy.get("max_i2"), policy.get("min_kappa")
    parts.append("I² reported" if max_i2 is None else f"I² <= {max_i2}")
    parts.append("kappa reported" if min_kappa is None else f"kappa >= {min_kappa}")
    return "; ".join(parts)
