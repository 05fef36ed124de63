"""Compatibility in the field: performance per acquisition stratum (slice-thickness band,
scanner manufacturer and model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evidence.report_outcomes import DesignCounts, Proportion, group_outcomes, proportion
from evidence.store import OutcomeRecord

STRATUM_DIMENSIONS = ("slice_thickness_band", "manufacturer", "model")


@dataclass(frozen=True)
class StratumRow:
    task: str
    dimension: str
    value: str
    metrics: dict[str, Proportion]
    design: DesignCounts


def _stratum_key(dimension: str) -> Callable[[OutcomeRecord], tuple[str, ...]]:
    def key(outcome: OutcomeRecord) -> tuple[str, ...]:
        return (str(getattr(outcome, dimension) or "unknown"),)

    return key


def strata_analysis(outcomes: Sequence[OutcomeRecord]) -> list[StratumRow]:
    """Performance per task and acquisition stratum (slice-thickness band, manufacturer, model)."""
    rows: list[StratumRow] = []
    for (task,), group in group_outcomes(outcomes, lambda o: (o.stream.task,)).items():
        for dimension in STRATUM_DIMENSIONS:
            by_value = group_outcomes(group, _stratum_key(dimension))
            for (value,), cases in by_value.items():
                metrics = {m: proportion(m, cases) for m in ("sensitivity", "specificity")}
                rows.append(StratumRow(task, dimension, value, metrics, DesignCounts.of(cases)))
    return rows
