"""Performance snapshots: what the field showed, week by week, as it was known at the time.

Every snapshot is one version, task, site (or all sites), metric and study design over one
ISO week of prediction times, with its Wilson interval and follow-up completeness. Truth
arrives days to months after a prediction, so a week's figures grow after the week ends;
:func:`changed_snapshots` keeps a new row only when a figure moved, so the stored series is a
history of what was known when (the evidence a regulator asks for), not a copy per refresh.

Pure: the store reads outcomes and prediction counts, these functions compute, the store
writes (:meth:`postmarket.evidence.store.EvidenceStore.record_snapshots`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from detectors import wilson_interval

if TYPE_CHECKING:  # the store imports this module
    from postmarket.evidence.store import EvidenceStore, OutcomeRecord, PredictionCount

SNAPSHOT_METRICS = ("sensitivity", "specificity")
ALL_SITES = None
"""``site`` of a snapshot pooled over every site of the version."""


@dataclass(frozen=True)
class Snapshot:
    """Observed ``metric`` of one version and task at one site (None: all) in one week."""

    version: str
    task: str
    site: str | None
    metric: str
    study_design: str
    window_start: datetime
    window_end: datetime
    successes: int
    trials: int
    ci_lower: float
    ci_upper: float
    followup_completeness: float

    @property
    def identity(self) -> tuple[str, str, str | None, str, str, datetime]:
        """What names the series a snapshot belongs to (its figures aside)."""
        return (
            self.version,
            self.task,
            self.site,
            self.metric,
            self.study_design,
            self.window_start,
        )

    @property
    def figures(self) -> tuple[int, int, float]:
        return self.successes, self.trials, round(self.followup_completeness, 9)


def week_of(moment: datetime) -> tuple[datetime, datetime]:
    """The ISO week (Monday 00:00 UTC to the next Monday) holding ``moment``."""
    day = moment.astimezone(UTC).date()
    monday = datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)
    return monday, monday + timedelta(days=7)


def _success(metric: str, outcome: OutcomeRecord) -> bool | None:
    if metric == "sensitivity":
        return outcome.decision == "positive" if outcome.label == "positive" else None
    return outcome.decision == "negative" if outcome.label == "negative" else None


Group = tuple[str, str, str | None, str, datetime]
"""(version, task, site or None, study design, week start)."""


def _groups(stream_version: str, task: str, site: str, design: str, week: datetime) -> list[Group]:
    return [(stream_version, task, site, design, week), (stream_version, task, None, design, week)]


def performance_snapshots(
    outcomes: Iterable[OutcomeRecord],
    weekly_predictions: Iterable[tuple[datetime, PredictionCount]],
) -> list[Snapshot]:
    """Weekly snapshots of every version, task and site, and of all sites pooled.

    ``weekly_predictions`` pairs each week's start with a stream's prediction count in it:
    the denominator of follow-up completeness. A group without any judged case for a metric
    has no snapshot for it (there is nothing to show yet).
    """
    cases: dict[Group, list[OutcomeRecord]] = defaultdict(list)
    for outcome in outcomes:
        week, _ = week_of(outcome.prediction_time)
        stream = outcome.stream
        for group in _groups(
            stream.device_version, stream.task, stream.site_id, outcome.study_design, week
        ):
            cases[group].append(outcome)
    predicted: dict[Group, int] = defaultdict(int)
    for week, count in weekly_predictions:
        stream = count.stream
        for group in _groups(
            stream.device_version, stream.task, stream.site_id, count.study_design, week
        ):
            predicted[group] += count.predictions
    snapshots = []
    for group, members in sorted(cases.items(), key=lambda item: _order(item[0])):
        snapshots += _snapshots_of(group, members, predicted.get(group, 0))
    return snapshots


def _order(group: Group) -> tuple[str, str, str, str, datetime]:
    version, task, site, design, week = group
    return version, task, site or "", design, week


def _snapshots_of(
    group: Group, members: Sequence[OutcomeRecord], predictions: int
) -> list[Snapshot]:
    version, task, site, design, week = group
    # Predictions arrive before their outcomes, so a count lagging behind the sink's outcome
    # batch must not report more than 100 % completeness.
    completeness = min(1.0, len(members) / predictions) if predictions else 1.0
    snapshots = []
    for metric in SNAPSHOT_METRICS:
        judged = [hit for hit in (_success(metric, o) for o in members) if hit is not None]
        if not judged:
            continue
        lower, upper = wilson_interval(sum(judged), len(judged))
        snapshots.append(
            Snapshot(
                version=version,
                task=task,
                site=site,
                metric=metric,
                study_design=design,
                window_start=week,
                window_end=week + timedelta(days=7),
                successes=sum(judged),
                trials=len(judged),
                ci_lower=lower,
                ci_upper=upper,
                followup_completeness=completeness,
            )
        )
    return snapshots


def changed_snapshots(
    fresh: Iterable[Snapshot],
    latest: dict[tuple[str, str, str | None, str, str, datetime], Snapshot],
) -> list[Snapshot]:
    """The snapshots whose figures differ from the latest stored one of their series."""
    return [
        snapshot
        for snapshot in fresh
        if (previous := latest.get(snapshot.identity)) is None
        or previous.figures != snapshot.figures
    ]


def refresh_snapshots(store: EvidenceStore, device_id: str) -> int:
    """Recompute a device's weekly snapshots from its stored outcomes; store what moved."""
    outcomes = store.outcomes(device_id)
    if not outcomes:
        return 0
    first, _ = week_of(outcomes[0].prediction_time)
    _, last = week_of(outcomes[-1].prediction_time)
    weekly: list[tuple[datetime, PredictionCount]] = []
    week = first
    while week < last:
        end = week + timedelta(days=7)
        weekly += [(week, count) for count in store.prediction_counts(device_id, week, end)]
        week = end
    return store.record_snapshots(device_id, performance_snapshots(outcomes, weekly))
