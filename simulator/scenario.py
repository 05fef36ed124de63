"""The scenario file: sites, acquisition devices, AI devices with claims, injected changes.

A scenario is TOML validated into frozen models (unknown keys are errors, so a typo never
silently falls back to a default). Days are simulated days counted from ``start``;
``day = 20`` means the change begins at the start of the 21st simulated day.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from postmarket.contracts.events import DeviceVersion, Identifier, SliceThicknessBand

Rate = Annotated[float, Field(gt=0.0, lt=1.0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Day = Annotated[int, Field(ge=0, le=3650)]
ChangeClass = Literal["major_enhancement", "minor_enhancement", "corrective", "bug_fix"]


class ScenarioError(ValueError):
    """The scenario file is missing, not TOML, or does not describe a valid fleet."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scanner(_Model):
    """One acquisition device at a site (a CT scanner or a fundus camera)."""

    manufacturer: Annotated[str, Field(min_length=1, max_length=64)]
    model: Annotated[str, Field(min_length=1, max_length=64)]
    software_version: Annotated[str, Field(min_length=1, max_length=64)]
    modality: Literal["CT", "OP"]
    share: Share = 1.0
    """Relative share of the site's cases of this modality."""
    slice_thickness: dict[SliceThicknessBand, Share] = Field(default_factory=dict)
    """Relative weights of thickness bands (CT only; empty for photographs)."""

    @model_validator(mode="after")
    def _ct_has_thickness(self) -> Scanner:
        if self.modality == "CT" and not any(self.slice_thickness.values()):
            raise ValueError("a CT scanner needs slice_thickness weights")
        return self


class Readers(_Model):
    """Two blinded readers per case and an adjudicator when they disagree."""

    sensitivity: Rate = 0.93
    specificity: Rate = 0.96
    adjudicator_sensitivity: Rate = 0.99
    adjudicator_specificity: Rate = 0.99
    per_site: Annotated[int, Field(ge=3, le=50)] = 4
    """Readers available at a site; each case draws two different ones (and an adjudicator)."""


class GroundTruth(_Model):
    """How a device's cases get their ground truth, and how late and how often."""

    method: Literal["double_read", "follow_up"]
    completeness: Share = 0.9
    """Share of cases that ever get ground truth (the rest are lost to follow-up)."""
    completeness_positive: Share | None = None
    """Share of truly positive cases that get ground truth (default ``completeness``)."""
    completeness_negative: Share | None = None
    """Share of truly negative cases that get ground truth (default ``completeness``).
    Below ``completeness_positive`` it is verification bias: positives are referred and
    followed up, negatives more often lost, so the labelled cases over-represent positives."""
    median_delay_days: Annotated[float, Field(gt=0.0, le=730.0)] = 5.0
    max_delay_days: Annotated[float, Field(gt=0.0, le=1095.0)] = 60.0
    pathology_share: Share = 0.3
    """For ``follow_up``: share of positives confirmed by pathology (the rest by imaging)."""
    readers: Readers = Readers()

    @model_validator(mode="after")
    def _delays_ordered(self) -> GroundTruth:
        if self.median_delay_days > self.max_delay_days:
            raise ValueError("median_delay_days exceeds max_delay_days")
        return self

    def completeness_of(self, positive: bool) -> float:
        """Share of cases of one true label that ever get ground truth."""
        by_label = self.completeness_positive if positive else self.completeness_negative
        return self.completeness if by_label is None else by_label


class Interval(_Model):
    value: Rate
    ci_lower: Rate
    ci_upper: Rate

    @model_validator(mode="after")
    def _contains_value(self) -> Interval:
        if not self.ci_lower <= self.value <= self.ci_upper:
            raise ValueError("value must lie within [ci_lower, ci_upper]")
        return self


class Device(_Model):
    """An AI device: its task, claims from registration testing, truth model."""

    id: Identifier
    task: Identifier
    modality: Literal["CT", "OP"]
    version: DeviceVersion
    change_class: ChangeClass | None = None
    sensitivity: Interval
    specificity: Interval
    reference_prevalence: Rate
    test_database: Annotated[str, Field(min_length=1, max_length=256)]
    site_calibration: bool = False
    """False: one calibration (at the reference prevalence) everywhere, so a site with
    another prevalence sees miscalibrated scores, as with a real device. True: scores and
    threshold recalibrated to each site's prevalence (decisions unchanged)."""
    ground_truth: GroundTruth


class TruePerformance(_Model):
    """A site's true sensitivity and specificity for one device, pinned by the scenario."""

    sensitivity: Rate
    specificity: Rate

    @model_validator(mode="after")
    def _informative(self) -> TruePerformance:
        if self.sensitivity + self.specificity <= 1.0:
            raise ValueError("sensitivity + specificity must exceed 1")
        return self


class Site(_Model):
    """A hospital: its volumes and prevalence per device, and its acquisition devices."""

    id: Identifier
    institution: Annotated[str, Field(min_length=1, max_length=64)]
    city: Annotated[str, Field(min_length=1, max_length=64)] = "Springfield"
    daily_cases: dict[Identifier, Annotated[float, Field(ge=0.0, le=10_000.0)]]
    """Mean cases a day per device id (Poisson); together they are the site's case mix."""
    prevalence: dict[Identifier, Rate] = Field(default_factory=dict)
    """Per device id; a device left out gets a prevalence drawn from the fleet's
    ``prevalence_range`` (seeded per site and device)."""
    scanners: tuple[Scanner, ...] = Field(min_length=1)
    performance: Literal["fleet", "registered", "drawn"] = "fleet"
    """The site's true sensitivity and specificity per device: the fleet's
    ``heterogeneity`` (``fleet``), the registered point estimates (``registered``) or
    drawn within the registered confidence intervals (``drawn``)."""
    true_performance: dict[Identifier, TruePerformance] = Field(default_factory=dict)
    """Per device id, true performance pinned by the scenario (overrides ``performance``)."""


class Fleet(_Model):
    """How the fleet's sites differ from the registration study and from each other.

    ``heterogeneity = "none"`` keeps every site at the registered point estimates (each run
    of a scenario without a ``[fleet]`` table is what it always was). ``"registered_ci"``
    draws each site's true sensitivity and specificity per device within the registered
    confidence interval: on the logit scale, a normal on each side of the point estimate
    (the median) whose ``ci_coverage`` central interval is the registered CI, truncated to
    it, so no site falls below the claim's lower bound (all sites are in control) and a
    site's draw is seeded by the scenario seed, the site and the device alone (adding a
    site leaves the others' draws unchanged).
    """

    heterogeneity: Literal["none", "registered_ci"] = "none"
    ci_coverage: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    """The coverage of the registered intervals (their central probability)."""
    prevalence_range: tuple[Rate, Rate] = (0.15, 0.35)
    """Uniform range of the prevalence drawn for a site that does not fix its own."""

    @field_validator("prevalence_range")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError("prevalence_range must be (low, high)")
        return bounds


class Effect(_Model):
    """How a change moves scores: target rates, or a logit shift of every score."""

    sensitivity: Rate | None = None
    specificity: Rate | None = None
    score_shift: Annotated[float, Field(ge=-10.0, le=10.0)] = 0.0
    """Logit shift of every score (negative: lower scores, fewer positives)."""


class _Injection(_Model):
    name: Identifier
    day: Day
    description: Annotated[str, Field(max_length=500)] = ""


class ScannerChange(_Injection):
    """A new acquisition device at one site takes a share of its cases from ``day``."""

    kind: Literal["scanner_change"]
    site: Identifier
    scanner: Scanner
    effect: Effect = Effect()


class VersionRollout(_Injection):
    """A device version deployed from ``day`` at the listed sites (all when empty)."""

    kind: Literal["version_rollout"]
    device: Identifier
    version: DeviceVersion
    sites: tuple[Identifier, ...] = ()
    registered: bool = True
    change_class: ChangeClass | None = "minor_enhancement"
    effect: Effect = Effect()


class SiteSilence(_Injection):
    """A site's collector sends nothing from ``day`` on (an outage nobody reported)."""

    kind: Literal["site_silence"]
    site: Identifier


class PerformanceDrift(_Injection):
    """From ``day`` a device's performance moves at the listed sites (all when empty), with
    no new version and no new scanner to show for it: a population or protocol change,
    an ageing camera. A target rate in ``effect`` is the rate the site reaches whatever its
    own true performance was."""

    kind: Literal["performance_drift"]
    device: Identifier
    sites: tuple[Identifier, ...] = ()
    effect: Effect


class MalformedBurst(_Injection):
    """``count`` invalid records written raw to an input topic at ``day``."""

    kind: Literal["malformed_burst"]
    site: Identifier
    count: Annotated[int, Field(ge=1, le=100_000)]
    topic: Literal["predictions", "followups"] = "predictions"


class MalformedBatch(_Injection):
    """``count`` signed batches of ``site``'s collector at ``day``, each holding
    ``good_cases`` of its cases (with their follow-ups) and one bad event of every kind in
    :data:`simulator.malformed.BATCH_DEFECTS` among them."""

    kind: Literal["malformed_batch"]
    site: Identifier
    count: Annotated[int, Field(ge=1, le=12)] = 1
    """Batches, an hour apart from noon: all within their day."""
    good_cases: Annotated[int, Field(ge=1, le=100)] = 4
    device: Identifier | None = None
    """The device of the good cases (default: the site's first, by id)."""


class Backfill(_Injection):
    """At ``day`` a site uploads its retrospective cases of days [from_day, to_day)."""

    kind: Literal["backfill"]
    site: Identifier
    device: Identifier
    from_day: Annotated[int, Field(ge=-3650, le=3650)]
    to_day: Annotated[int, Field(ge=-3650, le=3650)]

    @model_validator(mode="after")
    def _window_before_upload(self) -> Backfill:
        if not self.from_day < self.to_day <= self.day:
            raise ValueError("a backfill needs from_day < to_day <= day")
        return self


AnyInjection = (
    ScannerChange
    | VersionRollout
    | PerformanceDrift
    | SiteSilence
    | MalformedBurst
    | MalformedBatch
    | Backfill
)
Injection = Annotated[AnyInjection, Field(discriminator="kind")]


class Scenario(_Model):
    """A whole simulated fleet over ``days`` simulated days from ``start``."""

    name: Identifier
    seed: int = 0
    start: AwareDatetime
    days: Annotated[int, Field(ge=1, le=3650)]
    devices: tuple[Device, ...] = Field(min_length=1)
    sites: tuple[Site, ...] = Field(min_length=1)
    injections: tuple[Injection, ...] = ()
    fleet: Fleet = Fleet()

    @field_validator("start")
    @classmethod
    def _midnight(cls, start: datetime) -> datetime:
        return start.replace(hour=0, minute=0, second=0, microsecond=0)

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        devices = {d.id: d for d in self.devices}
        sites = {s.id for s in self.sites}
        if len(devices) != len(self.devices) or len(sites) != len(self.sites):
            raise ValueError("device and site ids must be unique")
        names = [i.name for i in self.injections]
        if len(set(names)) != len(names):
            raise ValueError("injection names must be unique")
        for site in self.sites:
            for device_id in sorted({*site.daily_cases, *site.prevalence, *site.true_performance}):
                if device_id not in devices:
                    raise ValueError(f"site {site.id}: unknown device {device_id!r}")
                modality = devices[device_id].modality
                if device_id in site.daily_cases and not any(
                    s.modality == modality for s in site.scanners
                ):
                    raise ValueError(f"site {site.id}: no {modality} scanner for {device_id}")
        for injection in self.injections:
            for site_id in _sites_named(injection):
                if site_id not in sites:
                    raise ValueError(f"injection {injection.name}: unknown site {site_id!r}")
            named_device = getattr(injection, "device", None)
            if named_device is not None and named_device not in devices:
                raise ValueError(f"injection {injection.name}: unknown device {named_device!r}")
            if isinstance(injection, MalformedBatch):
                cases = self.site(injection.site).daily_cases
                if not cases or (named_device is not None and named_device not in cases):
                    reason = "its site has no cases of that device"
                    raise ValueError(f"injection {injection.name}: {reason}")
        return self

    def device(self, device_id: str) -> Device:
        return next(d for d in self.devices if d.id == device_id)

    def site(self, site_id: str) -> Site:
        return next(s for s in self.sites if s.id == site_id)


def _sites_named(injection: AnyInjection) -> tuple[str, ...]:
    if isinstance(injection, VersionRollout | PerformanceDrift):
        return injection.sites
    return (injection.site,)


def load_scenario(path: Path, seed: int | None = None) -> Scenario:
    """The scenario in ``path`` (``seed`` overrides the file's), or a :class:`ScenarioError`."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"{path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML ({error})") from None
    if seed is not None:
        document["seed"] = seed
    try:
        return Scenario.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'scenario'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise ScenarioError(f"{path}: invalid scenario: {problems}") from None
