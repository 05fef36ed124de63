"""A version's labelled charts designed when its registration arrives, not at its first event.

A chart's exact design (:func:`streams.detector_design.labelled_chart`, about 0.1 s per
claimed metric cold) follows from the registration and the policy alone, and every site's
stream of the version shares it; designed at the version's first prediction it stalls the
event path once per new version. Designed here, from the same call a new stream makes
(:func:`~streams.detector_design.design_detectors`), the stream finds it cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postmarket.contracts.events import RegistryEntry
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.detector_design import design_detectors
from streams.monitor_policy import MonitorPolicy


def registered_tasks(entry: RegistryEntry) -> list[str]:
    """The tasks a version claims anything of, each the task of one of its streams."""
    return sorted({claim.task for claim in entry.claims})


def design_version_charts(entry: RegistryEntry, policy: MonitorPolicy) -> int:
    """Design the labelled charts of each of the version's tasks with the claims, prevalence
    and lower bounds a new stream of the task adopts (:class:`streams.live_streams.
    Registrations`), so the design caches hold them; the tasks designed."""
    designed = 0
    for task in registered_tasks(entry):
        claims = claimed_performance(entry, task)
        if claims:
            lower_bounds = claimed_lower_bounds(entry, task)
            design_detectors(claims, policy, entry.reference_prevalence, lower_bounds)
            designed += 1
    return designed


class RegisteredCharts:
    """Which registry values' charts are designed: each value once, and again only when the
    registry holds a new one for its version (held by identity, as the table holds it).

    Only one worker reads each registry record; the others see it in their copy of the
    global table, so each worker designs from its table, not from the topic."""

    def __init__(self, policy: MonitorPolicy) -> None:
        self.policy = policy
        self._designed: dict[str, object] = {}

    def design_new(self, registry: Mapping[str, Any]) -> int:
        """Design the charts of every version whose registry value is new here; how many."""
        designed = 0
        for version_key, state in list(registry.items()):
            if state and self._designed.get(version_key) is not state:
                entry = RegistryEntry.model_validate(state, strict=False)
                design_version_charts(entry, self.policy)
                self._designed[version_key] = state
                designed += 1
        return designed
