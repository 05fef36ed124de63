"""The version history as the report shows it: each version's registration, its change's
classification and the change-control policy's decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from evidence.report_outcomes import DesignCounts, group_outcomes
from evidence.store import (
    DeviceView,
    OutcomeRecord,
    VersionView,
)
from postmarket.versions import (
    ChangeControlPolicy,
    change_class,
    most_significant_change,
    registration_required,
)


@dataclass(frozen=True)
class VersionRow:
    version: str
    status: str
    regulator: str
    reference: str
    registered_on: date | None
    version_change: str
    change_record: str
    needs_registration: bool
    decision: str
    first_seen: datetime | None
    sites: int
    design: DesignCounts

    @property
    def seen_before_registration(self) -> bool:
        """Whether the field ran this version before the day it was registered. A version
        never registered is judged by the change-control policy instead (``decision``)."""
        if self.first_seen is None or self.registered_on is None:
            return False
        return self.first_seen.date() < self.registered_on


def version_history(
    device: DeviceView,
    outcomes: Sequence[OutcomeRecord],
    policy: ChangeControlPolicy,
    first_seen: dict[str, datetime],
) -> list[VersionRow]:
    """Each version: registration, its change's classification, and the policy's decision."""
    registered = [v.version for v in device.versions if v.registration_status == "registered"]
    by_version = group_outcomes(outcomes, lambda o: (o.stream.device_version,))
    rows: list[VersionRow] = []
    previous: VersionView | None = None
    for view in device.versions:
        component = most_significant_change(previous.version, view.version) if previous else None
        version_change = "first version"
        if previous is not None and component is not None:
            kind = change_class(component).replace("_", " ")
            version_change = f"{kind} ({component}) from {previous.version}"
        change_record = "-"
        if view.change is not None:
            change_record = view.change.summary(policy.major_training_fraction)
            if view.change.description:
                change_record += f": {view.change.description}"
        if view.registration_status == "registered":
            needs, reason = False, "registered"
        else:
            base = max((v for v in registered if v <= view.version), default=None)
            decision = registration_required(base, view.version, view.change, policy)
            needs, reason = decision.required, decision.reason
        cases = by_version.get((str(view.version),), [])
        rows.append(
            VersionRow(
                version=str(view.version),
                status=view.registration_status,
                regulator=view.regulator,
                reference=view.reference,
                registered_on=view.registered_on,
                version_change=version_change,
                change_record=change_record,
                needs_registration=needs,
                decision=reason,
                first_seen=first_seen.get(str(view.version)),
                sites=len({o.stream.site_id for o in cases}),
                design=DesignCounts.of(cases),
            )
        )
        previous = view
    return rows
