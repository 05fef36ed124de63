"""Performance snapshots: what the field showed, week by week, as it was known at the time.

Every snapshot is one version, task, site (or all sites), metric and study design over one
ISO week of prediction times, with its Wilson interval and follow-up completeness. Truth
arrives days to months after a prediction, so a week's figures grow after the week ends;
:func:`changed_snapshots` keeps a new row only when a figure moved, so the stored series is a
history of what was known when (the evidence a regulator asks for), not a copy per refresh.

Pure: the store aggregates outcomes and prediction counts per week, these functions
compute, the store writes (:meth:`evidence.store.EvidenceStore.record_snapshots`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol

from evidence.views import OutcomeRecord, PredictionCount
from postmarket.contracts.events import StreamKey

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
    def identity(self) -> SeriesKey:
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
    def figures(self) -> Figures:
        return snapshot_figures(self.successes, self.trials, self.followup_completeness)


SeriesKey = tuple[str, str, str | None, str, str, datetime]
"""(version, task, site or None, metric, study design, week start): one snapshot series."""
Figures = tuple[int, int, float]
"""(successes, trials, follow-up completeness): what a new snapshot of a series must change."""


def snapshot_figures(successes: int, trials: int, followup_completeness: float) -> Figures:
    """A snapshot's figures, compared to the latest of its series to tell if it moved."""
    return successes, trials, round(followup_completeness, 9)


def week_of(moment: datetime) -> tuple[datetime, datetime]:
    """The ISO week (Monday 00:00 UTC to the next Monday) holding ``moment``."""
    day = moment.astimezone(UTC).date()
    monday = datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)
    return monday, monday + timedelta(days=7)


Group = tuple[str, str, str | None, str, datetime]
"""(version, task, site or None, study design, week start)."""


def _groups(stream_version: str, task: str, site: str, design: str, week: datetime) -> list[Group]:
    return [(stream_version, task, site, design, week), (stream_version, task, None, design, week)]


@dataclass(frozen=True)
class WeekCounts:
    """One stream's outcomes of one study design in one ISO week, tallied for its snapshots.

    All a snapshot needs from the outcomes, so the database can aggregate them (see
    :meth:`evidence.store.EvidenceStore.week_counts`) instead of the refresh
    reading every outcome of the device's history.
    """

    stream: StreamKey
    study_design: str
    week: datetime
    """Monday 00:00 UTC starting the week of the outcomes' prediction times."""
    cases: int
    positives: int
    true_positives: int
    negatives: int
    true_negatives: int


def week_counts(outcomes: Iterable[OutcomeRecord]) -> list[WeekCounts]:
    """Tally outcomes per stream, study design and week (what the store's aggregate returns)."""
    tallies: dict[tuple[StreamKey, str, datetime], list[int]] = defaultdict(lambda: [0] * 5)
    for outcome in outcomes:
        week, _ = week_of(outcome.prediction_time)
        tally = tallies[(outcome.stream, outcome.study_design, week)]
        tally[0] += 1
        if outcome.label == "positive":
            tally[1] += 1
            tally[2] += outcome.decision == "positive"
        elif outcome.label == "negative":
            tally[3] += 1
            tally[4] += outcome.decision == "negative"
    return [
        WeekCounts(stream, design, week, *tally)
        for (stream, design, week), tally in tallies.items()
    ]


def performance_snapshots(
    outcomes: Iterable[OutcomeRecord],
    weekly_predictions: Iterable[tuple[datetime, PredictionCount]],
) -> list[Snapshot]:
    """Weekly snapshots of every version, task and site, and of all sites pooled.

    ``weekly_predictions`` pairs each week's start with a stream's prediction count in it:
    the denominator of follow-up completeness. A group without any judged case for a metric
    has no snapshot for it (there is nothing to show yet).
    """
    return weekly_snapshots(week_counts(outcomes), weekly_predictions)


def weekly_snapshots(
    counts: Iterable[WeekCounts],
    weekly_predictions: Iterable[tuple[datetime, PredictionCount]],
) -> list[Snapshot]:
    """:func:`performance_snapshots` from outcomes already tallied per stream and week."""
    tallies: dict[Group, list[int]] = defaultdict(lambda: [0] * 5)
    for count in counts:
        stream = count.stream
        for group in _groups(
            stream.device_version, stream.task, stream.site_id, count.study_design, count.week
        ):
            tally = tallies[group]
            tally[0] += count.cases
            tally[1] += count.positives
            tally[2] += count.true_positives
            tally[3] += count.negatives
            tally[4] += count.true_negatives
    predicted: dict[Group, int] = defaultdict(int)
    for week, prediction_count in weekly_predictions:
        stream = prediction_count.stream
        for group in _groups(
            stream.device_version, stream.task, stream.site_id, prediction_count.study_design, week
        ):
            predicted[group] += prediction_count.predictions
    snapshots = []
    for group, tally in sorted(tallies.items(), key=lambda item: _order(item[0])):
        snapshots += _snapshots_of(group, tally, predicted.get(group, 0))
    return snapshots


def _order(group: Group) -> tuple[str, str, str, str, datetime]:
    version, task, site, design, week = group
    return version, task, site or "", design, week


def _snapshots_of(group: Group, tally: Sequence[int], predictions: int) -> list[Snapshot]:
    # detectors imports scipy (~2 s): only the sink and reports compute intervals, not
    # every command that opens the store.
    from detectors.statistics import wilson_interval

    version, task, site, design, week = group
    cases, positives, true_positives, negatives, true_negatives = tally
    # Predictions arrive before their outcomes, so a count lagging behind the sink's outcome
    # batch must not report more than 100 % completeness.
    completeness = min(1.0, cases / predictions) if predictions else 1.0
    judged = {
        "sensitivity": (true_positives, positives),
        "specificity": (true_negatives, negatives),
    }
    snapshots = []
    for metric in SNAPSHOT_METRICS:
        successes, trials = judged[metric]
        if not trials:
            continue
        lower, upper = wilson_interval(successes, trials)
        snapshots.append(
            Snapshot(
                version=version,
                task=task,
                site=site,
                metric=metric,
                study_design=design,
                window_start=week,
                window_end=week + timedelta(days=7),
                successes=successes,
                trials=trials,
                ci_lower=lower,
                ci_upper=upper,
                followup_completeness=completeness,
            )
        )
    return snapshots


def changed_snapshots(
    fresh: Iterable[Snapshot], latest: Mapping[SeriesKey, Snapshot]
) -> list[Snapshot]:
    """The snapshots whose figures differ from the latest stored one of their series."""
    return moved_snapshots(fresh, {key: snapshot.figures for key, snapshot in latest.items()})


def moved_snapshots(
    fresh: Iterable[Snapshot], latest_figures: Mapping[SeriesKey, Figures]
) -> list[Snapshot]:
    """:func:`changed_snapshots` given only the latest figures of each stored series."""
    return [
        snapshot
        for snapshot in fresh
        if (previous := latest_figures.get(snapshot.identity)) is None
        or previous != snapshot.figures
    ]


class WeeklyCountsStore(Protocol):
    """What :func:`refresh_snapshots` needs of the evidence store (which imports this
    module, so it is named by what it does, not imported)."""

    def week_counts(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> list[WeekCounts]: ...

    def weekly_prediction_counts(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> list[tuple[datetime, PredictionCount]]: ...

    def record_snapshots(self, device_id: str, snapshots: Sequence[Snapshot]) -> int: ...


def refresh_snapshots(
    store: WeeklyCountsStore, device_id: str, weeks: Collection[datetime] | None = None
) -> int:
    """Recompute a device's weekly snapshots from its stored outcomes; store what moved.

    Two aggregates in the database (outcomes, then predictions, per stream, design and
    week) rather than every outcome read and one prediction count per week of history.
    ``weeks`` (their Monday starts) limits the refresh to the weeks that received outcomes
    or predictions since the last one: a week's snapshots depend on that week's alone, so
    the others cannot have moved. None refreshes every week.
    """
    if weeks is not None and not weeks:
        return 0
    counts = store.week_counts(device_id, weeks)
    if not counts:
        return 0
    snapshots = weekly_snapshots(counts, store.weekly_prediction_counts(device_id, weeks))
    return store.record_snapshots(device_id, snapshots)
