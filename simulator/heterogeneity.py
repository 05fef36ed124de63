"""Each site's true performance and prevalence per device: a realistic, heterogeneous fleet.

A registration study measures a device's sensitivity and specificity with a confidence
interval; in the field every site differs (its cameras and scanners, its graders, its
patients), and a site whose true sensitivity is anywhere inside the registered interval is
as good as the study showed. With ``[fleet] heterogeneity = "registered_ci"`` each site's
true rates are drawn inside the interval (:func:`drawn_rate`); without it every site runs
at the point estimates, as the scenario's fleet always did. A site's rates become logit
shifts of its class-conditional scores (:func:`simulator.calibration.class_shift`), so its
scores stay those of the same device, only better or worse separated.

Every draw is seeded by the scenario seed, the site and the device alone: adding a site, a
device elsewhere or an injected change leaves every other draw as it was.

>>> from simulator.scenario import Interval
>>> rng = random.Random("doc")
>>> claim = Interval(value=0.872, ci_lower=0.818, ci_upper=0.914)
>>> rates = [drawn_rate(rng, claim, 0.95) for _ in range(1000)]
>>> min(rates) >= 0.818 and max(rates) <= 0.914
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Literal

from simulator.calibration import OperatingPoint, class_shift, expit, logit, operating_point
from simulator.scenario import Device, Interval, Scanner, Scenario, Site

Basis = Literal["registered", "drawn", "pinned"]


@cache
def device_operating_point(device: Device) -> OperatingPoint:
    """The registered device's score model (solved once per device: it takes a while)."""
    return operating_point(
        device.sensitivity.value, device.specificity.value, device.reference_prevalence
    )


@dataclass(frozen=True)
class SitePerformance:
    """One device's true operating characteristics at one site, and where they came from."""

    site_id: str
    device_id: str
    sensitivity: float
    specificity: float
    prevalence: float
    basis: Basis
    """``registered`` (the point estimates), ``drawn`` (inside the CI) or ``pinned``."""
    prevalence_drawn: bool
    positive_shift: float = 0.0
    """Logit shift of the positives' scores from the registered device (0: registered)."""
    negative_shift: float = 0.0

    @property
    def baseline_shifts(self) -> tuple[float, float]:
        return self.positive_shift, self.negative_shift

    def as_json(self) -> dict[str, object]:
        return {
            "sensitivity": round(self.sensitivity, 4),
            "specificity": round(self.specificity, 4),
            "prevalence": round(self.prevalence, 4),
            "basis": self.basis,
            "prevalence_drawn": self.prevalence_drawn,
        }


def drawn_rate(rng: random.Random, interval: Interval, coverage: float) -> float:
    """A rate inside ``interval``: its median the point estimate, its central ``coverage``
    the interval (a normal on each side of the point estimate on the logit scale, with the
    spread that puts each bound at its quantile), truncated to the interval."""
    z_bound = NormalDist().inv_cdf((1.0 + coverage) / 2.0)
    centre = logit(interval.value)
    below = (centre - logit(interval.ci_lower)) / z_bound
    above = (logit(interval.ci_upper) - centre) / z_bound
    z = rng.gauss(0.0, 1.0)
    while abs(z) > z_bound:  # truncation by rejection: at 95 % one draw in 20 is redone
        z = rng.gauss(0.0, 1.0)
    rate = expit(centre + z * (above if z > 0 else below))
    return min(max(rate, interval.ci_lower), interval.ci_upper)


def _basis(scenario: Scenario, site: Site, device: Device) -> Basis:
    if device.id in site.true_performance:
        return "pinned"
    if site.performance == "fleet":
        return "drawn" if scenario.fleet.heterogeneity == "registered_ci" else "registered"
    return site.performance


def site_performance(scenario: Scenario, site: Site, device: Device) -> SitePerformance:
    """The true sensitivity, specificity and prevalence of ``device`` at ``site``."""
    basis = _basis(scenario, site, device)
    if basis == "pinned":
        pinned = site.true_performance[device.id]
        sensitivity, specificity = pinned.sensitivity, pinned.specificity
    elif basis == "drawn":
        rng = random.Random(f"{scenario.seed}|performance|{site.id}|{device.id}")  # noqa: S311
        sensitivity = drawn_rate(rng, device.sensitivity, scenario.fleet.ci_coverage)
        specificity = drawn_rate(rng, device.specificity, scenario.fleet.ci_coverage)
    else:
        sensitivity, specificity = device.sensitivity.value, device.specificity.value
    prevalence = site.prevalence.get(device.id)
    if prevalence is None:
        rng = random.Random(f"{scenario.seed}|prevalence|{site.id}|{device.id}")  # noqa: S311
        low, high = scenario.fleet.prevalence_range
        prevalence = round(rng.uniform(low, high), 4)
    shifts = (0.0, 0.0)
    if basis != "registered":
        point = device_operating_point(device)
        shifts = class_shift(point, True, sensitivity), class_shift(point, False, specificity)
    return SitePerformance(
        site.id,
        device.id,
        sensitivity,
        specificity,
        prevalence,
        basis,
        device.id not in site.prevalence,
        *shifts,
    )


def fleet_performance(scenario: Scenario) -> dict[tuple[str, str], SitePerformance]:
    """Every (site, device) of the scenario's case mix with its true performance."""
    return {
        (site.id, device_id): site_performance(scenario, site, scenario.device(device_id))
        for site in scenario.sites
        for device_id in sorted(site.daily_cases)
    }


# --- a synthetic fleet of many sites ----------------------------------------------------------

CAMERAS = (
    ("Canon", "CR-2 AF", "1.3.0"),
    ("Topcon", "NW400", "2.1"),
    ("Zeiss", "VISUCAM 500", "5.2"),
    ("Optomed", "Aurora", "3.0.1"),
    ("Nidek", "AFC-330", "1.10"),
)
CT_SCANNERS = (
    ("Siemens", "SOMATOM Force", "syngo CT VB20A"),
    ("GE", "Revolution CT", "revo_ct_21a"),
    ("Philips", "IQon Spectral CT", "4.7.6"),
    ("Canon", "Aquilion ONE", "V10.8"),
    ("United Imaging", "uCT 780", "R002"),
)
THICKNESS_MIXES = (
    {"sub_mm": 0.5, "1_2mm": 0.4, "about_5mm": 0.1},
    {"sub_mm": 0.3, "1_2mm": 0.5, "about_5mm": 0.2},
    {"1_2mm": 0.7, "about_5mm": 0.3},
    {"sub_mm": 0.6, "1_2mm": 0.4},
)


def _scanners(rng: random.Random, modality: Literal["CT", "OP"]) -> list[Scanner]:
    catalogue = CAMERAS if modality == "OP" else CT_SCANNERS
    count = rng.choice((1, 2, 2, 3))
    shares = [rng.uniform(0.2, 1.0) for _ in range(count)]
    return [
        Scanner(
            manufacturer=manufacturer,
            model=model,
            software_version=software,
            modality=modality,
            share=round(share / sum(shares), 4),
            slice_thickness=rng.choice(THICKNESS_MIXES) if modality == "CT" else {},
        )
        for (manufacturer, model, software), share in zip(
            rng.sample(catalogue, count), shares, strict=True
        )
    ]


def synthetic_sites(
    seed: int,
    count: int,
    devices: tuple[Device, ...],
    *,
    median_daily_cases: float = 20.0,
    spread: float = 0.6,
    second_device_share: float = 0.5,
) -> tuple[Site, ...]:
    """``count`` sites, each seeded by ``seed`` and its number alone: the first device at
    every site and each further one at a share of them, log-normal daily volumes around
    ``median_daily_cases``, one to three acquisition devices per modality, prevalence and
    performance left to the fleet (drawn)."""
    sites = []
    for number in range(1, count + 1):
        rng = random.Random(f"{seed}|synthetic-site|{number}")  # noqa: S311
        mix = [devices[0]] + [d for d in devices[1:] if rng.random() < second_device_share]
        daily = {d.id: round(median_daily_cases * math.exp(rng.gauss(0.0, spread)), 1) for d in mix}
        modalities: list[Literal["CT", "OP"]] = sorted({d.modality for d in mix})
        scanners = [s for modality in modalities for s in _scanners(rng, modality)]
        sites.append(
            Site(
                id=f"site-{number:04d}",
                institution=f"Hospital {number}",
                daily_cases=daily,
                scanners=tuple(scanners),
            )
        )
    return tuple(sites)
