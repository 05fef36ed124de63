"""The standard test database gate: a candidate version's outputs on a database, judged
against its registered claims before it may be registered or deployed.

Pure: cases, predictions and claims in, verdicts out; the store keeps them
(:mod:`~evidence.testdb_gate_store`). The statistics are the ones the live
pipeline and its report use: the confusion cell of each case as the stream monitor counts
it, Wilson (or Clopper-Pearson, "exact") intervals of a proportion, DeLong for an AUC,
funnel limits per hospital around the database's own proportion, DerSimonian-Laird
heterogeneity across hospitals, and Cohen's kappa of the two blinded reads. A claim's
acceptable level follows the same policy as the charts
(:func:`~postmarket.claim_levels.chart_levels`: by default its lower confidence bound).

A verdict has one row per claim and stratum: overall; per hospital (generalizability); per
slice-thickness band, scanner manufacturer and model, and any other stratum the database
records (compatibility); then per claim the heterogeneity across hospitals (I² with its
interval), and once the reader agreement on the database's truth. Each proportion row is
judged by the pre-specified criterion (:data:`CRITERIA`); the gate passes when every
judged row is met.

>>> from postmarket.contracts.events import Claim
>>> cases = [DatabaseCase(f"c{i}", "positive" if i < 50 else "negative",
...                       strata={"hospital": "H1" if i % 2 else "H2"}) for i in range(150)]
>>> predictions = [DatabasePrediction(c.case_pseudonym, 0.9 if c.label == "positive" else 0.1,
...                                   c.label) for c in cases]
>>> claim = Claim(task="nodule", metric="sensitivity", value=0.9, ci_lower=0.85,
...               ci_upper=0.95, test_database="db@1")
>>> verdict = gate_verdict(match_predictions(cases, predictions), [claim], GatePolicy())
>>> [(r.stratum, r.value, r.n, r.met) for r in verdict.rows if r.stratum != "heterogeneity"]
[('overall', 'all', 50, True), ('hospital', 'H1', 25, True), ('hospital', 'H2', 25, True)]
>>> verdict.passed
True
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from detectors.statistics import (
    clopper_pearson_interval,
    cohen_kappa_from_table,
    dersimonian_laird,
    i2_interval,
    logit_proportion_effects,
    pooled_proportion,
    roc_auc_ci,
    site_funnel_position,
    wilson_interval,
)
from evidence.testdb import IDENTIFIER, STRATA, DatabaseCase, Label
from postmarket.claim_levels import (
    AcceptableRule,
    LevelPolicy,
    UnmonitorableClaim,
    chart_levels,
)
from postmarket.contracts.events import Claim

__all__ = [
    "CELLS",
    "CRITERIA",
    "PROPORTION_METRICS",
    "Confusion",
    "DatabasePrediction",
    "GatePolicy",
    "GateRow",
    "GateVerdict",
    "PredictionFileError",
    "ScoredCase",
    "acceptable_level",
    "confusion",
    "confusion_cell",
    "criterion_met",
    "gate_verdict",
    "match_predictions",
    "proportion_interval",
    "read_predictions",
]

IntervalMethod = Literal["wilson", "exact"]
Criterion = Literal["lower_bound", "estimate", "not_below"]
CRITERIA: dict[str, str] = {
    "lower_bound": "lower bound >= acceptable",
    "estimate": "estimate >= acceptable",
    "not_below": "upper bound >= acceptable",
}
"""What each criterion demands of a row, as the verdict table shows it: ``lower_bound`` (the
default) that the stratum *demonstrates* the acceptable level, ``estimate`` that its point
estimate reaches it, ``not_below`` only that it is not significantly below it."""
CELLS = ("tp", "fn", "tn", "fp")
"""As :data:`streams.stream_monitor.CELLS` counts them."""
PROPORTION_METRICS = ("sensitivity", "specificity", "ppv", "npv")
_SUCCESS_CELLS: dict[str, tuple[str, str]] = {
    "sensitivity": ("tp", "fn"),
    "specificity": ("tn", "fp"),
    "ppv": ("tp", "fp"),
    "npv": ("tn", "fn"),
}
"""Metric -> (success cell, failure cell), as the report counts them."""
GENERALIZABILITY = "hospital"
HETEROGENEITY = "heterogeneity"
READER_AGREEMENT = "reader_agreement"
MAX_PREDICTION_ROWS = 1_000_000


class PredictionFileError(ValueError):
    """A predictions file the gate cannot score, naming the row and column, or the case."""


@dataclass(frozen=True)
class GatePolicy:
    """The pre-specified acceptance criteria, fixed before the gate is run."""

    acceptable: AcceptableRule = "ci_lower"
    """Each claim's acceptable level: its lower confidence bound or point estimate."""
    interval: IntervalMethod = "wilson"
    """Wilson (as the live report) or Clopper-Pearson ("exact") intervals of a proportion."""
    alpha: float = 0.05
    """Two-sided: 95 % intervals."""
    overall_criterion: Criterion = "lower_bound"
    stratum_criterion: Criterion = "lower_bound"
    funnel_coverage: float = 0.998
    """Funnel limits per hospital, as the report draws them (99.8 %, "3 SD")."""
    max_i2: float | None = None
    """Heterogeneity across hospitals above this I² fails the claim; None: reported only."""
    min_kappa: float | None = None
    """Reader agreement below this kappa fails the gate; None: reported only."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatabasePrediction:
    """A candidate version's output on one case of the database, as a Prediction has it."""

    case_pseudonym: str
    score: float
    decision: Label
    operating_threshold: float | None = None


@dataclass(frozen=True)
class ScoredCase:
    """A database case with the candidate's output on it."""

    case: DatabaseCase
    prediction: DatabasePrediction


@dataclass(frozen=True)
class GateRow:
    """One stratum of one claim (or the reader agreement), judged or reported."""

    metric: str
    """The claim's metric; ``kappa`` for the reader agreement."""
    stratum: str
    """``overall``, a stratum column, ``heterogeneity`` or ``reader_agreement``."""
    value: str
    """The stratum's value (a hospital, a band), ``all`` overall."""
    n: int
    """Cases the metric counts (hospitals for heterogeneity, read pairs for kappa)."""
    successes: int | None
    estimate: float | None
    lower: float | None
    upper: float | None
    interval: str
    acceptable: float | None
    criterion: str
    met: bool | None
    """None: reported, not judged (no cases, or no criterion set)."""
    funnel: str | None = None
    """Per hospital: ``below``, ``inside`` or ``above`` the database's funnel."""
    note: str = ""

    @property
    def outcome(self) -> str:
        return "reported" if self.met is None else "met" if self.met else "FAILED"


@dataclass(frozen=True)
class GateVerdict:
    """Every row of a gate run, and whether the candidate passed."""

    rows: tuple[GateRow, ...]
    cases: int
    claims: tuple[Claim, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(row.met is not False for row in self.rows)

    @property
    def failed_rows(self) -> tuple[GateRow, ...]:
        return tuple(row for row in self.rows if row.met is False)


def read_predictions(path: Path) -> list[DatabasePrediction]:
    """A candidate's outputs from a CSV (``.csv``, ``.csv.gz``) or Parquet file: columns
    ``case_pseudonym``, ``score`` (0-1), ``decision`` (positive/negative), optionally
    ``operating_threshold`` (0-1), which, when given, must agree with the decision."""
    import pandas as pd  # type: ignore[import-untyped]  # only when a file is read

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise PredictionFileError(
                f"{path.name}: predictions are a .csv, .csv.gz or .parquet file"
            )
    except (OSError, ValueError) as error:
        if isinstance(error, PredictionFileError):
            raise
        raise PredictionFileError(f"{path}: cannot be read as predictions ({error})") from None
    missing = [c for c in ("case_pseudonym", "score", "decision") if c not in frame.columns]
    if missing:
        raise PredictionFileError(f"{path.name}: no column {', '.join(missing)}")
    if len(frame) > MAX_PREDICTION_ROWS:
        raise PredictionFileError(
            f"{path.name}: {len(frame):,} rows, more than {MAX_PREDICTION_ROWS:,}"
        )
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    predictions = [_prediction(row, number) for number, row in enumerate(rows, start=2)]
    seen: set[str] = set()
    for prediction in predictions:
        if prediction.case_pseudonym in seen:
            raise PredictionFileError(f"case {prediction.case_pseudonym} has more than one output")
        seen.add(prediction.case_pseudonym)
    return predictions


def _prediction(row: Mapping[str, Any], number: int) -> DatabasePrediction:
    """One row (``number``: its line in a CSV file, header being line 1)."""

    def text(column: str) -> str:
        value = row.get(column)
        return "" if value is None else str(value).strip()

    def refused(column: str, why: str) -> PredictionFileError:
        return PredictionFileError(f"row {number}, column {column}: {why}")

    def probability(column: str) -> float:
        value = text(column)
        try:
            number = float(value)
        except ValueError:
            raise refused(column, f"{value[:40]!r} is not a number") from None
        if not 0.0 <= number <= 1.0:  # NaN fails too
            raise refused(column, f"{value[:40]} is not between 0 and 1")
        return number

    pseudonym = text("case_pseudonym")
    if not IDENTIFIER.fullmatch(pseudonym) or len(pseudonym) > 128:
        raise refused("case_pseudonym", f"{pseudonym[:40]!r} is not an identifier")
    score = probability("score")
    decision = text("decision")
    if decision not in ("positive", "negative"):
        raise refused("decision", f"{decision[:40]!r} is not positive or negative")
    threshold = probability("operating_threshold") if text("operating_threshold") else None
    if threshold is not None and (score >= threshold) != (decision == "positive"):
        raise refused(
            "decision", f"{decision} disagrees with score {score:g} at threshold {threshold:g}"
        )
    return DatabasePrediction(
        pseudonym, score, "positive" if decision == "positive" else "negative", threshold
    )


def match_predictions(
    cases: Sequence[DatabaseCase], predictions: Sequence[DatabasePrediction]
) -> list[ScoredCase]:
    """Each case with its prediction; refused if a prediction names a case the database
    does not have, or a case has no prediction (a gate scores the whole database)."""
    by_case = {prediction.case_pseudonym: prediction for prediction in predictions}
    known = {case.case_pseudonym for case in cases}
    strangers = sorted(by_case.keys() - known)
    if strangers:
        raise PredictionFileError(
            f"{len(strangers):,} prediction(s) for cases not in the database, first {strangers[0]}"
        )
    missing = sorted(known - by_case.keys())
    if missing:
        raise PredictionFileError(
            f"{len(missing):,} case(s) of the database have no prediction, first {missing[0]}"
        )
    return [ScoredCase(case, by_case[case.case_pseudonym]) for case in cases]


def confusion_cell(label: Label, decision: Label) -> str:
    """The case's cell of :data:`CELLS`, as :func:`streams.stream_monitor.confusion_cell`."""
    if label == "positive":
        return "tp" if decision == "positive" else "fn"
    return "tn" if decision == "negative" else "fp"


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of a set of scored cases."""

    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0

    def successes_of(self, metric: str) -> tuple[int, int]:
        """(successes, trials) of a proportion metric."""
        hit, miss = _SUCCESS_CELLS[metric]
        successes = getattr(self, hit)
        return successes, successes + getattr(self, miss)


def confusion(scored: Iterable[ScoredCase]) -> Confusion:
    counts = dict.fromkeys(CELLS, 0)
    for item in scored:
        counts[confusion_cell(item.case.label, item.prediction.decision)] += 1
    return Confusion(**counts)


def proportion_interval(
    successes: int, n: int, method: IntervalMethod, alpha: float = 0.05
) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` interval of ``successes / n`` by the policy's method."""
    if method == "exact":
        return clopper_pearson_interval(successes, n, alpha)
    return wilson_interval(successes, n, alpha)


def acceptable_level(claim: Claim, rule: AcceptableRule) -> float:
    """The level a claim's strata must reach: as a chart is designed at it for sensitivity
    and specificity (:func:`~postmarket.claim_levels.chart_levels`), and by the same rule
    for the metrics no chart monitors, or a claim too high to chart.

    >>> claim = Claim(task="t", metric="sensitivity", value=0.872, ci_lower=0.818,
    ...               ci_upper=0.914, test_database="db@1")
    >>> acceptable_level(claim, "ci_lower"), acceptable_level(claim, "point_estimate")
    (0.818, 0.872)
    """
    if claim.metric in ("sensitivity", "specificity"):
        try:
            metric: Literal["sensitivity", "specificity"] = (
                "sensitivity" if claim.metric == "sensitivity" else "specificity"
            )
            return chart_levels(metric, claim.value, claim.ci_lower, LevelPolicy(rule)).acceptable
        except UnmonitorableClaim:
            pass
    return claim.value if rule == "point_estimate" else claim.ci_lower


def criterion_met(
    criterion: Criterion, estimate: float, lower: float, upper: float, acceptable: float
) -> bool:
    """Whether a row meets ``criterion`` at ``acceptable`` (see :data:`CRITERIA`)."""
    if criterion == "estimate":
        return estimate >= acceptable
    if criterion == "not_below":
        return upper >= acceptable
    return lower >= acceptable


def gate_verdict(
    scored: Sequence[ScoredCase],
    claims: Sequence[Claim],
    policy: GatePolicy,
    extra_strata: Sequence[str] = (),
    database: str = "",
) -> GateVerdict:
    """Every claim judged overall and per stratum, heterogeneity across hospitals, and the
    reader agreement of the database's truth.

    ``database`` (``name@version``) is what the cases are; a claim measured on another
    database says so in its overall row's note."""
    rows: list[GateRow] = []
    strata = (*STRATA, *(s for s in extra_strata if s not in STRATA))
    for claim in claims:
        acceptable = acceptable_level(claim, policy.acceptable)
        overall = _claim_row(
            claim, "overall", "all", scored, acceptable, policy.overall_criterion, policy
        )
        if database and claim.test_database != database:
            elsewhere = f"claim measured on {claim.test_database}, not {database}"
            overall = replace(overall, note="; ".join(filter(None, (overall.note, elsewhere))))
        rows.append(overall)
        for stratum in strata:
            for value, members in _by(scored, stratum).items():
                row = _claim_row(
                    claim, stratum, value, members, acceptable, policy.stratum_criterion, policy
                )
                if stratum == GENERALIZABILITY:
                    row = _with_funnel(row, claim.metric, scored, members, policy)
                rows.append(row)
        if claim.metric in PROPORTION_METRICS:
            heterogeneity = _heterogeneity(claim.metric, _by(scored, GENERALIZABILITY), policy)
            if heterogeneity is not None:
                rows.append(heterogeneity)
    agreement = _reader_agreement(scored, policy)
    if agreement is not None:
        rows.append(agreement)
    return GateVerdict(tuple(rows), len(scored), tuple(claims))


def _by(scored: Sequence[ScoredCase], stratum: str) -> dict[str, list[ScoredCase]]:
    """Cases per recorded value of ``stratum`` (cases that do not record it are left out)."""
    groups: dict[str, list[ScoredCase]] = defaultdict(list)
    for item in scored:
        value = item.case.strata.get(stratum)
        if value is not None:
            groups[value].append(item)
    return dict(sorted(groups.items()))


def _claim_row(
    claim: Claim,
    stratum: str,
    value: str,
    members: Sequence[ScoredCase],
    acceptable: float,
    criterion: Criterion,
    policy: GatePolicy,
) -> GateRow:
    shown = CRITERIA[criterion]
    if claim.metric == "auc":
        return _auc_row(claim, stratum, value, members, acceptable, criterion, policy)
    successes, n = confusion(members).successes_of(claim.metric)
    if n == 0:
        return GateRow(
            claim.metric, stratum, value, 0, 0, None, None, None, policy.interval, acceptable,
            shown, False if stratum == "overall" else None, note="no cases for this metric",
        )  # fmt: skip
    lower, upper = proportion_interval(successes, n, policy.interval, policy.alpha)
    estimate = successes / n
    met = criterion_met(criterion, estimate, lower, upper, acceptable)
    return GateRow(
        claim.metric, stratum, value, n, successes, estimate, lower, upper, policy.interval,
        acceptable, shown, met,
    )  # fmt: skip


def _auc_row(
    claim: Claim,
    stratum: str,
    value: str,
    members: Sequence[ScoredCase],
    acceptable: float,
    criterion: Criterion,
    policy: GatePolicy,
) -> GateRow:
    truth = [1 if item.case.label == "positive" else 0 for item in members]
    scores = [item.prediction.score for item in members]
    shown = CRITERIA[criterion]
    try:
        auc = roc_auc_ci(truth, scores, policy.alpha)
    except ValueError:
        return GateRow(
            "auc", stratum, value, len(members), None, None, None, None, "delong", acceptable,
            shown, False if stratum == "overall" else None,
            note="needs at least 2 positive and 2 negative cases",
        )  # fmt: skip
    met = criterion_met(criterion, auc.auc, auc.lower, auc.upper, acceptable)
    return GateRow(
        "auc", stratum, value, len(members), None, auc.auc, auc.lower, auc.upper, "delong",
        acceptable, shown, met,
    )  # fmt: skip


def _with_funnel(
    row: GateRow,
    metric: str,
    everything: Sequence[ScoredCase],
    members: Sequence[ScoredCase],
    policy: GatePolicy,
) -> GateRow:
    """The hospital's position in the funnel around the whole database's proportion."""
    if metric not in PROPORTION_METRICS or row.n == 0 or row.successes is None:
        return row
    successes, n = confusion(everything).successes_of(metric)
    target = successes / n if n else None
    if target is None or not 0.0 < target < 1.0:
        return row
    position = site_funnel_position(row.successes, row.n, target, policy.funnel_coverage)
    return replace(row, funnel=position)


def _heterogeneity(
    metric: str, hospitals: Mapping[str, Sequence[ScoredCase]], policy: GatePolicy
) -> GateRow | None:
    """DerSimonian-Laird across hospitals (logit proportions, as the report pools sites)."""
    counts = [confusion(members).successes_of(metric) for members in hospitals.values()]
    counts = [(successes, n) for successes, n in counts if n > 0]
    if len(counts) < 2:
        return None
    effects, variances = logit_proportion_effects([s for s, _ in counts], [n for _, n in counts])
    pooled = dersimonian_laird(effects, variances, policy.alpha)
    interval = i2_interval(pooled.q, pooled.n_sites, policy.alpha)
    lower, upper = interval if interval is not None else (None, None)
    met = None if policy.max_i2 is None else pooled.i2 <= policy.max_i2
    criterion = "reported" if policy.max_i2 is None else f"I² <= {policy.max_i2:g}"
    note = (
        f"pooled {pooled_proportion(pooled):.3f}, tau² {pooled.tau2:.3f}, "
        f"Q {pooled.q:.2f} (p {pooled.q_p_value:.3f})"
    )
    return GateRow(
        metric, HETEROGENEITY, "across hospitals", len(counts), None, pooled.i2, lower, upper,
        "I² (Higgins-Thompson)", None, criterion, met, note=note,
    )  # fmt: skip


def _reader_agreement(scored: Sequence[ScoredCase], policy: GatePolicy) -> GateRow | None:
    """Cohen's kappa of the first and second blinded reads, where a case has both."""
    table = [[0, 0], [0, 0]]
    for item in scored:
        first, second = item.case.first_read, item.case.second_read
        if first is not None and second is not None:
            table[first == "negative"][second == "negative"] += 1
    pairs = sum(map(sum, table))
    if pairs == 0:
        return None
    criterion = "reported" if policy.min_kappa is None else f"kappa >= {policy.min_kappa:g}"
    try:
        kappa = cohen_kappa_from_table(table, alpha=policy.alpha)
    except ValueError:
        return GateRow(
            "kappa", READER_AGREEMENT, "first vs second read", pairs, None, None, None, None,
            "Fleiss-Cohen-Everitt", policy.min_kappa, criterion, None,
            note="undefined: every read the same label",
        )  # fmt: skip
    met = None if policy.min_kappa is None else kappa.kappa >= policy.min_kappa
    agreed = table[0][0] + table[1][1]
    return GateRow(
        "kappa", READER_AGREEMENT, "first vs second read", pairs, agreed, kappa.kappa,
        kappa.lower, kappa.upper, "Fleiss-Cohen-Everitt", policy.min_kappa, criterion, met,
        note=f"{agreed:,} of {pairs:,} reads agree",
    )  # fmt: skip
