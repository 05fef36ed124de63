"""The post-market report's content: every number a regulator reads, computed from the store.

:func:`build_report` reads the store once and returns a :class:`DeviceReport` of plain
values; :mod:`postmarket.evidence.report_render` turns it into one self-contained HTML file
(and PDF). The statistics are the ``detectors`` library's: Wilson intervals, the anytime-valid
beta-binomial claims test, funnel limits and DerSimonian-Laird heterogeneity.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from detectors import (
    BetaBinomialConfidenceSequence,
    KappaEstimate,
    cohen_kappa_from_table,
    dersimonian_laird,
    logit_proportion_effects,
    pooled_proportion,
    site_funnel_position,
    wilson_interval,
)
from postmarket.claim_levels import AcceptableRule
from postmarket.config import Settings
from postmarket.contracts.events import Alert, Claim, StreamKey, utc_now
from postmarket.evidence.audit import ChainVerdict
from postmarket.evidence.snapshots import Snapshot, performance_snapshots
from postmarket.evidence.store import (
    AlertView,
    DeviceView,
    EvidenceStore,
    OutcomeRecord,
    PredictionCount,
    SiteCounts,
    VersionView,
)
from postmarket.versions import (
    ChangeControlPolicy,
    change_class,
    most_significant_change,
    registration_required,
)

METRICS = ("sensitivity", "specificity", "ppv", "npv")
DESIGNS = ("prospective", "retrospective")
STRATUM_DIMENSIONS = ("slice_thickness_band", "manufacturer", "model")
CLAIMS_ALPHA = 0.05
FUNNEL_COVERAGE = 0.998
"""Sites outside the 99.8 % ("3 SD") funnel are flagged: with many sites, 95 % flags too many."""
MIN_WEEKLY_CASES = 10
"""A week with fewer judged cases is left out of the weekly line: a partial last week of
one case would otherwise plot as a sensitivity of 0 or 1."""

_ALERT_SUCCESSES = {
    "sensitivity": ("true_positives", "false_negatives"),
    "specificity": ("true_negatives", "false_positives"),
    "ppv": ("true_positives", "false_positives"),
    "npv": ("true_negatives", "false_negatives"),
}
"""Metric -> (successes, failures) among the confusion counts of an alert's evidence."""


def alert_observation(alert: Alert) -> Proportion | None:
    """The observed value behind an alert's statistic, from the counts in its evidence.

    A stream's own confusion counts for its metric, or a fleet review's site counts; None
    when the evidence holds no cases of the metric (label-free tests, unmonitored streams).
    """
    evidence = alert.evidence
    metric = alert_metric(alert)
    if "site_cases" in evidence:
        successes, n = evidence.get("site_successes", 0), evidence["site_cases"]
    elif metric in _ALERT_SUCCESSES:
        hit, miss = _ALERT_SUCCESSES[metric]
        successes = evidence.get(hit, 0)
        n = successes + evidence.get(miss, 0)
    else:
        return None
    return Proportion.of(successes, n) if n > 0 else None


def alert_metric(alert: Alert) -> str | None:
    """The performance metric an alert's detector charts (``sensitivity_cusum``: sensitivity)."""
    return next((m for m in METRICS if alert.detector.startswith(f"{m}_")), None)


def observation_sentence(alert: Alert) -> str | None:
    """``observed sensitivity 0.79 over 312 cases``, or None without such counts."""
    observed = alert_observation(alert)
    if observed is None or observed.estimate is None:
        return None
    return f"observed {alert_metric(alert)} {observed.estimate:.2f} over {observed.n} cases"


@dataclass(frozen=True)
class DesignCounts:
    """Outcomes behind a number, by study design: prospective (live) or retrospective."""

    prospective: int = 0
    retrospective: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[OutcomeRecord]) -> DesignCounts:
        counts = Counter(o.study_design for o in outcomes)
        return cls(counts["prospective"], counts["retrospective"])

    @property
    def total(self) -> int:
        return self.prospective + self.retrospective

    def __str__(self) -> str:
        return f"prospective {self.prospective}, retrospective {self.retrospective}"


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` with its two-sided 95 % Wilson interval (None without cases)."""

    successes: int
    n: int
    lower: float | None
    upper: float | None

    @classmethod
    def of(cls, successes: int, n: int) -> Proportion:
        if n == 0:
            return cls(0, 0, None, None)
        lower, upper = wilson_interval(successes, n)
        return cls(successes, n, lower, upper)

    @property
    def estimate(self) -> float | None:
        return self.successes / self.n if self.n else None


def _cases(metric: str, outcome: OutcomeRecord) -> bool | None:
    """Whether ``outcome`` counts for ``metric``, and if so whether it is a success."""
    positive_label = outcome.label == "positive"
    positive_call = outcome.decision == "positive"
    if metric == "sensitivity":
        return positive_call if positive_label else None
    if metric == "specificity":
        return (not positive_call) if not positive_label else None
    if metric == "ppv":
        return positive_label if positive_call else None
    if metric == "npv":
        return (not positive_label) if not positive_call else None
    raise ValueError(f"unknown metric {metric!r}")


def proportion(metric: str, outcomes: Iterable[OutcomeRecord]) -> Proportion:
    """Observed ``metric`` (sensitivity, specificity, ppv, npv) over ``outcomes``."""
    judged = [hit for hit in (_cases(metric, o) for o in outcomes) if hit is not None]
    return Proportion.of(sum(judged), len(judged))


@dataclass(frozen=True)
class ClaimCheck:
    """One registered claim of one version against what the field shows in the window."""

    version: str
    task: str
    metric: str
    claim: Claim | None
    observed: Proportion
    verdict: str
    """``below claim``, ``consistent``, ``no registered claim`` or ``no cases``."""
    decided_at_case: int | None
    decided_at: datetime | None
    log_evidence: float | None
    design: DesignCounts


def claims_test(
    claimed: float, metric: str, outcomes: Sequence[OutcomeRecord]
) -> tuple[str, int | None, datetime | None, float | None]:
    """Run the anytime-valid claims test over ``outcomes`` in time order.

    Returns the verdict, the case number and time at which the claim was rejected (if it
    was), and the final log e-value against the claim.
    """
    test = BetaBinomialConfidenceSequence(1.0 - claimed, CLAIMS_ALPHA)
    decided_at_case: int | None = None
    decided_at: datetime | None = None
    statistic: float | None = None
    n = 0
    for outcome in outcomes:
        hit = _cases(metric, outcome)
        if hit is None:
            continue
        n += 1
        result = test.update(0 if hit else 1)
        statistic = result.statistic
        if result.fired:
            decided_at_case, decided_at = n, outcome.prediction_time
    if n == 0:
        return "no cases", None, None, None
    return test.verdict, decided_at_case, decided_at, statistic


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


@dataclass(frozen=True)
class StratumRow:
    task: str
    dimension: str
    value: str
    metrics: dict[str, Proportion]
    design: DesignCounts


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


@dataclass(frozen=True)
class ReaderAgreementRow:
    """Agreement of the two blinded readers behind one version's outcomes at one site.

    ``site`` is ``all sites`` for the version's pooled row. ``kappa`` is None when it is
    undefined (no pairs, or every read gave the same label).
    """

    version: str
    task: str
    site: str
    pairs: int
    agreeing: int
    kappa: KappaEstimate | None

    @property
    def observed_agreement(self) -> float | None:
        return self.agreeing / self.pairs if self.pairs else None


@dataclass(frozen=True)
class CompletenessRow:
    """Follow-up completeness of one version at one site, per design."""

    version: str
    site: str
    task: str
    study_design: str
    predictions: int
    outcomes: int

    @property
    def completeness(self) -> float | None:
        return self.outcomes / self.predictions if self.predictions else None


@dataclass(frozen=True)
class SurveillancePlan:
    """What the plan fixed in advance for the alarms: the acceptable level and the budget."""

    acceptable_level: AcceptableRule
    budget_per_year: float
    fleet_streams: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SurveillancePlan:
        return cls(
            settings.acceptable_level,
            settings.fleet_false_alarms_per_year,
            settings.fleet_streams,
        )


@dataclass(frozen=True)
class AlarmPromise:
    """What the device's alarms promise in the report's window, beside what they raised."""

    plan: SurveillancePlan
    streams: int
    """The device's streams with data in the window."""
    years: float
    alerts_raised: int

    @property
    def expected_false_alarms(self) -> float:
        """At most, for the device's streams over the window, were every site in control."""
        return self.plan.budget_per_year / self.plan.fleet_streams * self.streams * self.years

    def sentence(self) -> str:
        level = {
            "ci_lower": "the lower 95 % confidence bound of its registered claim",
            "point_estimate": "its registered point estimate",
        }[self.plan.acceptable_level]
        return (
            f"Every alarm's false-alarm rate holds for any site performing at or above {level}: "
            f"the fleet's tests are designed to raise at most {self.plan.budget_per_year:g} "
            f"false alarms a year among {self.plan.fleet_streams} planned streams, so this "
            f"device's {self.streams} stream(s) expect at most {self.expected_false_alarms:.2f} "
            f"in this period; {self.alerts_raised} alert(s) were raised, true or false. This "
            "assumes independent cases, complete and unbiased ground truth, and each stream's "
            "volume as planned."
        )


@dataclass(frozen=True)
class DeviceReport:
    """Everything the report shows, for one device over ``[start, end)``."""

    device: DeviceView
    start: datetime
    end: datetime
    generated_at: datetime
    policy: ChangeControlPolicy
    outcomes: tuple[OutcomeRecord, ...]
    claims: tuple[ClaimCheck, ...]
    sites: tuple[SiteRow, ...]
    heterogeneity: tuple[Heterogeneity, ...]
    strata: tuple[StratumRow, ...]
    alerts: tuple[AlertView, ...]
    versions: tuple[VersionRow, ...]
    completeness: tuple[CompletenessRow, ...]
    truth_sources: dict[str, int]
    audit: ChainVerdict
    reader_agreement: tuple[ReaderAgreementRow, ...] = ()
    weekly: tuple[Snapshot, ...] = ()
    """Per version, design and ISO week, all sites pooled: performance over time."""
    promise: AlarmPromise | None = None

    @property
    def design(self) -> DesignCounts:
        return DesignCounts.of(self.outcomes)

    @property
    def last_day(self) -> date:
        """The period's last day, included, as ``--to`` gave it (``end`` is the day after)."""
        return (self.end - timedelta(days=1)).date()

    @property
    def period(self) -> str:
        return f"{self.start:%Y-%m-%d} to {self.last_day:%Y-%m-%d}"

    def predictions(self, study_design: str) -> int:
        return sum(r.predictions for r in self.completeness if r.study_design == study_design)

    def followed_up(self, study_design: str) -> int:
        return sum(r.outcomes for r in self.completeness if r.study_design == study_design)

    def alert_design(self) -> DesignCounts:
        """Outcomes on the streams that raised the alerts shown."""
        alerted = {a.alert.stream for a in self.alerts}
        return DesignCounts.of(o for o in self.outcomes if o.stream in alerted)

    def findings(self) -> list[str]:
        """The summary's sentences: what a regulator must know first."""
        lines: list[str] = []
        below = [c for c in self.claims if c.verdict == "below claim"]
        tested = [c for c in self.claims if c.verdict in ("below claim", "consistent")]
        if below:
            lines += [
                f"Version {c.version} ({c.task}): observed {c.metric} is below the registered "
                f"claim of {c.claim.value:.1%} (claims test rejected at case {c.decided_at_case})."
                for c in below
                if c.claim is not None
            ]
        if tested and not below:
            lines.append(
                f"All {len(tested)} tested claims are consistent with the field data "
                f"(anytime-valid claims test, alpha {CLAIMS_ALPHA})."
            )
        unregistered = [v for v in self.versions if v.needs_registration and v.sites]
        lines += [
            f"Version {v.version} ran at {v.sites} site(s) and needs change registration "
            f"under {self.policy.name} (status: {v.status})."
            for v in unregistered
        ]
        lines += [
            f"Version {v.version} ran in the field from {v.first_seen:%Y-%m-%d}, before its "
            f"registration on {v.registered_on:%Y-%m-%d}."
            for v in self.versions
            if v.seen_before_registration and v.first_seen and v.registered_on
        ]
        outside = [
            f"{row.site} ({row.version}, {metric})"
            for row in self.sites
            for metric, position in row.funnel.items()
            if position == "below"
        ]
        if outside:
            lines.append("Sites below the 99.8 % funnel limit: " + ", ".join(outside) + ".")
        opened = [a for a in self.alerts if a.status.value != "resolved"]
        recurred = sum(a.recurrences for a in self.alerts)
        lines.append(
            f"{len(self.alerts)} alert(s) in the window, {len(opened)} not yet resolved"
            + (f"; they recurred {recurred} time(s)." if recurred else ".")
        )
        prospective, retrospective = self.design.prospective, self.design.retrospective
        lines.append(
            f"{self.design.total} outcomes: {prospective} prospective (live) and "
            f"{retrospective} retrospective (replayed)."
        )
        if self.promise is not None:
            lines.append(self.promise.sentence())
        if not self.audit.intact:
            lines.append(f"THE AUDIT TRAIL IS BROKEN at {self.audit.problem}.")
        return lines


def _in_window(view: AlertView, begin: datetime, stop: datetime) -> bool:
    """Whether the alert's cases, or its recurrences, overlap ``[begin, stop)``: a problem
    first alerted before the window and still signalling in it is reported."""
    latest = max(view.alert.last_case_time, view.last_recurred_at or view.alert.last_case_time)
    return view.alert.first_case_time < stop and latest >= begin


def window(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end + 1 day 00:00)`` in UTC: both dates included."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return (
        datetime.combine(start, time(), tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC),
    )


def _group(
    outcomes: Iterable[OutcomeRecord], key: Callable[[OutcomeRecord], tuple[str, ...]]
) -> dict[tuple[str, ...], list[OutcomeRecord]]:
    groups: dict[tuple[str, ...], list[OutcomeRecord]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome)].append(outcome)
    return dict(sorted(groups.items()))


def claim_checks(
    versions: Sequence[VersionView], outcomes: Sequence[OutcomeRecord]
) -> list[ClaimCheck]:
    """Claims vs observed per version, task and metric (registered claims and observed ones)."""
    by_version_task = _group(outcomes, lambda o: (o.stream.device_version, o.stream.task))
    checks: list[ClaimCheck] = []
    keys = set(by_version_task) | {
        (str(v.version), c.task) for v in versions for c in v.claims if c.metric in METRICS
    }
    claims = {(str(v.version), c.task, c.metric): c for v in versions for c in v.claims}
    for version, task in sorted(keys, key=lambda k: (_version_order(k[0]), k[1])):
        group = by_version_task.get((version, task), [])
        for metric in ("sensitivity", "specificity", "ppv", "npv"):
            claim = claims.get((version, task, metric))
            observed = proportion(metric, group)
            if claim is None and metric in ("ppv", "npv"):
                continue  # shown only where claimed: they depend on prevalence
            if claim is None:
                verdict, case, when, statistic = "no registered claim", None, None, None
            else:
                verdict, case, when, statistic = claims_test(claim.value, metric, group)
            checks.append(
                ClaimCheck(
                    version, task, metric, claim, observed, verdict, case, when, statistic,
                    DesignCounts.of(group),
                )
            )  # fmt: skip
    return checks


def _version_order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


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


def counted_proportion(metric: str, counts: Iterable[SiteCounts]) -> Proportion:
    """Observed ``metric`` over one or more sites' confusion counts, as :func:`proportion`."""
    successes = trials = 0
    for site in counts:
        if metric == "sensitivity":
            hits, misses = site.true_positives, site.false_negatives
        elif metric == "specificity":
            hits, misses = site.true_negatives, site.false_positives
        elif metric == "ppv":
            hits, misses = site.true_positives, site.false_positives
        elif metric == "npv":
            hits, misses = site.true_negatives, site.false_negatives
        else:
            raise ValueError(f"unknown metric {metric!r}")
        successes, trials = successes + hits, trials + hits + misses
    return Proportion.of(successes, trials)


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
        fleets.items(), key=lambda item: (_version_order(item[0][0]), item[0][1], item[0][0])
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


def _stratum_key(dimension: str) -> Callable[[OutcomeRecord], tuple[str, ...]]:
    def key(outcome: OutcomeRecord) -> tuple[str, ...]:
        return (str(getattr(outcome, dimension) or "unknown"),)

    return key


def strata_analysis(outcomes: Sequence[OutcomeRecord]) -> list[StratumRow]:
    """Performance per task and acquisition stratum (slice-thickness band, manufacturer, model)."""
    rows: list[StratumRow] = []
    for (task,), group in _group(outcomes, lambda o: (o.stream.task,)).items():
        for dimension in STRATUM_DIMENSIONS:
            by_value = _group(group, _stratum_key(dimension))
            for (value,), cases in by_value.items():
                metrics = {m: proportion(m, cases) for m in ("sensitivity", "specificity")}
                rows.append(StratumRow(task, dimension, value, metrics, DesignCounts.of(cases)))
    return rows


def version_history(
    device: DeviceView,
    outcomes: Sequence[OutcomeRecord],
    policy: ChangeControlPolicy,
    first_seen: dict[str, datetime],
) -> list[VersionRow]:
    """Each version: registration, its change's classification, and the policy's decision."""
    registered = [v.version for v in device.versions if v.registration_status == "registered"]
    by_version = _group(outcomes, lambda o: (o.stream.device_version,))
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


def completeness_rows(
    predictions: Sequence[PredictionCount], outcomes: Sequence[OutcomeRecord]
) -> list[CompletenessRow]:
    """Predictions and outcomes per version, site, task and design (completeness = ratio)."""
    followed = Counter((o.stream, o.study_design) for o in outcomes)
    made: dict[tuple[StreamKey, str], int] = {
        (p.stream, p.study_design): p.predictions for p in predictions
    }
    keys = set(made) | set(followed)
    rows = [
        CompletenessRow(
            stream.device_version,
            stream.site_id,
            stream.task,
            design,
            max(made.get((stream, design), 0), followed[(stream, design)]),
            followed[(stream, design)],
        )
        for stream, design in keys
    ]
    return sorted(rows, key=lambda r: (_version_order(r.version), r.site, r.task, r.study_design))


def reader_agreement_rows(outcomes: Sequence[OutcomeRecord]) -> list[ReaderAgreementRow]:
    """Cohen's kappa of the blinded read pairs per version and task, per site and pooled."""
    read = [o for o in outcomes if o.blinded_reads is not None]
    rows: list[ReaderAgreementRow] = []
    for (version, task), cases in _group(
        read, lambda o: (o.stream.device_version, o.stream.task)
    ).items():
        per_site = _group(cases, lambda o: (o.stream.site_id,))
        groups = [("all sites", cases)] + [(site, group) for (site,), group in per_site.items()]
        rows += [_agreement_row(version, task, site, group) for site, group in groups]
    return sorted(rows, key=lambda r: (_version_order(r.version), r.task, r.site != "all sites"))


def _agreement_row(
    version: str, task: str, site: str, cases: Sequence[OutcomeRecord]
) -> ReaderAgreementRow:
    labels = ("positive", "negative")
    table = [[0, 0], [0, 0]]
    for first, second in (case.blinded_reads for case in cases if case.blinded_reads):
        table[labels.index(first)][labels.index(second)] += 1
    try:
        kappa: KappaEstimate | None = cohen_kappa_from_table(table)
    except ValueError:  # one label only: chance agreement is 1, kappa undefined
        kappa = None
    agreeing = table[0][0] + table[1][1]
    return ReaderAgreementRow(version, task, site, len(cases), agreeing, kappa)


def build_report(
    store: EvidenceStore,
    device_id: str,
    start: date,
    end: date,
    policy: ChangeControlPolicy,
    plan: SurveillancePlan | None = None,
) -> DeviceReport:
    """Read the store and compute the report of ``device_id`` for days ``start`` to ``end``;
    ``plan`` defaults to the configured one (:class:`postmarket.config.Settings`)."""
    begin, stop = window(start, end)
    device = store.device(device_id)
    outcomes = store.outcomes(device_id, begin, stop)
    predictions = store.prediction_counts(device_id, begin, stop)
    alerts = [view for view in store.device_alerts(device_id) if _in_window(view, begin, stop)]
    sites, heterogeneity = site_analysis(outcomes)
    return DeviceReport(
        device=device,
        start=begin,
        end=stop,
        generated_at=utc_now(),
        policy=policy,
        outcomes=tuple(outcomes),
        claims=tuple(claim_checks(device.versions, outcomes)),
        sites=tuple(sites),
        heterogeneity=tuple(heterogeneity),
        strata=tuple(strata_analysis(outcomes)),
        alerts=tuple(alerts),
        versions=tuple(version_history(device, outcomes, policy, store.first_sightings(device_id))),
        completeness=tuple(completeness_rows(predictions, outcomes)),
        truth_sources=dict(Counter(o.truth_source for o in outcomes)),
        audit=store.verify_audit_chain(),
        reader_agreement=tuple(reader_agreement_rows(outcomes)),
        weekly=tuple(s for s in performance_snapshots(outcomes, []) if s.site is None),
        promise=AlarmPromise(
            plan or SurveillancePlan.from_settings(Settings()),
            streams=len({o.stream for o in outcomes} | {a.alert.stream for a in alerts}),
            years=(stop - begin) / timedelta(days=365),
            alerts_raised=len(alerts),
        ),
    )
