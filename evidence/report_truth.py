"""The ground truth behind the report: follow-up completeness per version, site and design,
and the agreement of the two blinded readers (Cohen's kappa)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.statistics import KappaEstimate, cohen_kappa_from_table
from evidence.report_outcomes import group_outcomes, version_order
from evidence.store import (
    OutcomeRecord,
    PredictionCount,
)
from postmarket.contracts.events import StreamKey


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
    return sorted(rows, key=lambda r: (version_order(r.version), r.site, r.task, r.study_design))


def reader_agreement_rows(outcomes: Sequence[OutcomeRecord]) -> list[ReaderAgreementRow]:
    """Cohen's kappa of the blinded read pairs per version and task, per site and pooled."""
    read = [o for o in outcomes if o.blinded_reads is not None]
    rows: list[ReaderAgreementRow] = []
    for (version, task), cases in group_outcomes(
        read, lambda o: (o.stream.device_version, o.stream.task)
    ).items():
        per_site = group_outcomes(cases, lambda o: (o.stream.site_id,))
        groups = [("all sites", cases)] + [(site, group) for (site,), group in per_site.items()]
        rows += [_agreement_row(version, task, site, group) for site, group in groups]
    return sorted(rows, key=lambda r: (version_order(r.version), r.task, r.site != "all sites"))


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
