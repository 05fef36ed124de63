"""Generalizability in the field: performance per site, each site's place in the 99.8 %
funnel around its fleet, and DerSimonian-Laird heterogeneity across sites (the report's and
the fleet review's)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from detectors.statistics import (
    dersimonian_laird,
    logit_proportion_effects,
    pooled_proportion,
    site_funnel_position,
)
from evidence.report_outcomes import (
    DesignCounts,
    Proportion,
    counted_proportion,
    version_order,
)
from evidence.store import (
    OutcomeRecord,
    SiteCounts,
)

FUNNEL_COVERAGE = 0.998
"""Sites outside the 99.8 % ("3 SD") funnel are flagged: with many sites, 95 % flags too many."""


@dataclass(frozen=True)
class SiteRow:
    version: str
    task: str
    site: str
    metrics: dict[str, Proportion]
    funnel: dict[str, str]
    """Per metric: ``below``, ``inside`` or ``above`` the 99.8 % funnel, or ``-``."""
    design: DesignCounts


@dataclass(frozen=True)
class Heterogeneity:
    """DerSimonian-Laird pooling of one metric across the sites of one version and task."""

    version: str
    task: str
    metric: str
    n_sites: int
    fleet: Proportion
    pooled: float | None
    lower: float | None
    upper: float | None
    i2: float | None
    tau2: float | None
    q_p_value: float | None


def site_analysis(
    outcomes: Sequence[OutcomeRecord],
) -> tuple[list[SiteRow], list[Heterogeneity]]:
    """Per-site performance, funnel positions and heterogeneity per version and task."""
    return funnel_analysis(site_counts(outcomes))


_CONFUSION_CELL = {
    (True, True): "tp",
    (True, False): "fn",
    (False, False): "tn",
    (False, True): "fp",
}
"""(positive label, positive call) -> confusion cell."""


def site_counts(outcomes: Iterable[OutcomeRecord]) -> list[SiteCounts]:
    """What :meth:`EvidenceStore.site_counts` aggregates in SQL, counted from ``outcomes``."""
    tallies: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    spans: dict[tuple[str, str, str], tuple[datetime, datetime]] = {}
    for outcome in outcomes:
        key = (outcome.stream.device_version, outcome.stream.task, outcome.stream.site_id)
        cell = _CONFUSION_CELL[outcome.label == "positive", outcome.decision == "positive"]
        tallies[key][cell] += 1
        tallies[key][outcome.study_design] += 1
        when = outcome.prediction_time
        first, last = spans.get(key, (when, when))
        spans[key] = (min(first, when), max(last, when))
    return [
        SiteCounts(
            version, task, site,
            counts["tp"], counts["fn"], counts["tn"], counts["fp"],
            counts["prospective"], counts["retrospective"],
            *spans[(version, task, site)],
        )
        for (version, task, site), counts in sorted(tallies.items())
    ]  # fmt: skip


def funnel_analysis(
    counts: Iterable[SiteCounts],
) -> tuple[list[SiteRow], list[Heterogeneity]]:
    """:func:`site_analysis` from per-site counts: the report's and the fleet review's.

    Sites sit in the 99.8 % funnel around their fleet (same version and task); the fleet's
    heterogeneity is DerSimonian-Laird over its sites.
    """
    rows: list[SiteRow] = []
    pooled: list[Heterogeneity] = []
    fleets: dict[tuple[str, str], list[SiteCounts]] = defaultdict(list)
    for site in counts:
        fleets[(site.version, site.task)].append(site)
    for (version, task), members in sorted(
        fleets.items(), key=lambda item: (version_order(item[0][0]), item[0][1], item[0][0])
    ):
        sites = sorted(members, key=lambda site: site.site)
        fleet = {m: counted_proportion(m, sites) for m in ("sensitivity", "specificity")}
        for site in sites:
            metrics = {m: counted_proportion(m, [site]) for m in ("sensitivity", "specificity")}
            funnel = {m: _funnel(metrics[m], fleet[m]) for m in metrics}
            design = DesignCounts(site.prospective, site.retrospective)
            rows.append(SiteRow(version, task, site.site, metrics, funnel, design))
        for metric in ("sensitivity", "specificity"):
            per_site = [counted_proportion(metric, [site]) for site in sites]
            pooled.append(_heterogeneity(version, task, metric, fleet[metric], per_site))
    return rows, pooled


def _funnel(site: Proportion, fleet: Proportion) -> str:
    target = fleet.estimate
    if site.n == 0 or target is None or not 0.0 < target < 1.0:
        return "-"
    return site_funnel_position(site.successes, site.n, target, FUNNEL_COVERAGE)


def _heterogeneity(
    version: str, task: str, metric: str, fleet: Proportion, per_site: list[Proportion]
) -> Heterogeneity:
    sites = [p for p in per_site if p.n > 0]
    if len(sites) < 2:
        return Heterogeneity(
            version, task, metric, len(sites), fleet, None, None, None, None, None, None
        )
    effects, variances = logit_proportion_effects(
        [p.successes for p in sites], [p.n for p in sites]
    )
    result = dersimonian_laird(effects, variances)
    from scipy.special import expit

    return Heterogeneity(
        version,
        task,
        metric,
        len(sites),
        fleet,
        pooled_proportion(result),
        float(expit(result.lower)),
        float(expit(result.upper)),
        result.i2,
        result.tau2,
        result.q_p_value,
    )
