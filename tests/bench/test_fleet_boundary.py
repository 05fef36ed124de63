"""The boundary fleet of bench_fleet_false_alarms: every site at its acceptable levels."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from bench_fleet_false_alarms import in_control_fleet  # noqa: E402 - bench/ is not a package

from simulator.heterogeneity import site_performance  # noqa: E402


def test_the_boundary_fleet_pins_every_site_at_each_devices_claimed_lower_bounds() -> None:
    fleet = in_control_fleet(sites=6, days=30, boundary=True)
    for site in fleet.sites:
        for device_id in site.daily_cases:
            device = fleet.device(device_id)
            truth = site_performance(fleet, site, device)
            assert truth.basis == "pinned"
            assert truth.sensitivity == device.sensitivity.ci_lower
            assert truth.specificity == device.specificity.ci_lower


def test_the_heterogeneous_fleet_draws_its_rates_instead() -> None:
    fleet = in_control_fleet(sites=6, days=30)
    bases = {
        site_performance(fleet, site, fleet.device(device_id)).basis
        for site in fleet.sites
        for device_id in site.daily_cases
    }
    assert bases == {"drawn"}
