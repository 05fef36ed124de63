"""What an evidence store holds: devices, versions and the days their outcomes cover.

So a regulator handed a store knows which ``postmarket report --device ... --from ... --to
...`` to ask for. Read-only: one GROUP BY per device (:meth:`EvidenceStore.site_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidence.store import EvidenceStore
    from evidence.views import SiteCounts

NOT_IN_REGISTRY = "not in registry"


@dataclass(frozen=True)
class VersionHoldings:
    """One version and task of a device: its registration and the outcomes held for it."""

    version: str
    status: str
    task: str | None
    sites: int
    outcomes: int
    first_day: date | None
    last_day: date | None


@dataclass(frozen=True)
class DeviceHoldings:
    device_id: str
    name: str
    manufacturer: str
    versions: tuple[VersionHoldings, ...]

    @property
    def outcomes(self) -> int:
        return sum(v.outcomes for v in self.versions)

    @property
    def first_day(self) -> date | None:
        return min((v.first_day for v in self.versions if v.first_day), default=None)

    @property
    def last_day(self) -> date | None:
        return max((v.last_day for v in self.versions if v.last_day), default=None)


def version_holdings(
    registry: Sequence[tuple[str, str]], counts: Iterable[SiteCounts]
) -> list[VersionHoldings]:
    """Per version (registry order, then versions only the field knows) and task.

    ``registry`` is (version, registration status) as registered; a registered version with
    no outcomes is listed once with no task.
    """
    by_stream: dict[tuple[str, str], list[SiteCounts]] = {}
    for site in counts:
        by_stream.setdefault((site.version, site.task), []).append(site)
    status = dict(registry)
    order = [version for version, _ in registry]
    order += sorted({version for version, _ in by_stream} - set(order))
    rows: list[VersionHoldings] = []
    for version in order:
        tasks = sorted(task for v, task in by_stream if v == version)
        known = status.get(version, NOT_IN_REGISTRY)
        if not tasks:
            rows.append(VersionHoldings(version, known, None, 0, 0, None, None))
        for task in tasks:
            sites = by_stream[(version, task)]
            rows.append(
                VersionHoldings(
                    version,
                    known,
                    task,
                    sites=len({s.site for s in sites}),
                    outcomes=sum(s.prospective + s.retrospective for s in sites),
                    first_day=min(s.first_case_time for s in sites).date(),
                    last_day=max(s.last_case_time for s in sites).date(),
                )
            )
    return rows


def store_contents(store: EvidenceStore) -> list[DeviceHoldings]:
    """Every device in the registry or in the field data, with what the store holds of it."""
    registered = {device.device_id: device for device in store.devices()}
    holdings = []
    for device_id in sorted(set(registered) | set(store.field_devices())):
        device = registered.get(device_id)
        registry = (
            [(str(v.version), v.registration_status) for v in device.versions] if device else []
        )
        rows = version_holdings(registry, store.site_counts(device_id))
        holdings.append(
            DeviceHoldings(
                device_id,
                device.name if device else "",
                device.manufacturer if device else NOT_IN_REGISTRY,
                tuple(rows),
            )
        )
    return holdings


def _span(first: date | None, last: date | None) -> str:
    return f"{first} to {last}" if first and last else "no outcomes"


def contents_lines(holdings: Sequence[DeviceHoldings]) -> list[str]:
    """The listing ``postmarket evidence contents`` prints, one device block at a time."""
    if not holdings:
        return ["the store holds no device yet"]
    lines: list[str] = []
    for device in holdings:
        about = ", ".join(x for x in (device.name, device.manufacturer) if x)
        lines.append(
            f"{device.device_id}" + (f" ({about})" if about else "") + f": {device.outcomes} "
            f"outcomes, {_span(device.first_day, device.last_day)} (UTC, by prediction time)"
        )
        for v in device.versions:
            what = (
                f"{v.task}: {v.sites} site(s), {v.outcomes} outcomes, "
                f"{_span(v.first_day, v.last_day)}"
                if v.task
                else "no outcomes"
            )
            lines.append(f"  {v.version} ({v.status}) {what}")
        if device.first_day and device.last_day:
            lines.append(
                f"  report: postmarket report --device {device.device_id} --from "
                f"{device.first_day} --to {device.last_day} --out {device.device_id}.html"
            )
    return lines
