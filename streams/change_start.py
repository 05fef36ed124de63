"""When a CUSUM's run began: what a chart's signal gives as the start of the change.

A run of a multi-chart CUSUM (:class:`~detectors.BernoulliMultiCUSUM`) is the cases since
its statistic last left zero; the change it signals began with the first of them. A chart
fed one case at a time (a site stream) knows that case's time; a chart fed increments of
several (the pooled stage) knows it to the increment: the run began with the cases counted
after ``at``, the time the increment starts from. Both follow their runs with these two
functions, a site stream as increments of one case.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

RunStarts = list[datetime | None]
"""Per CUSUM of a chart, when its current run began (None: at zero, or not known)."""


def runs_started(
    before: Sequence[int], after: Sequence[int], starts: Sequence[datetime | None], at: datetime
) -> RunStarts:
    """Each run's start after an increment took the run lengths from ``before`` to
    ``after``: none at zero, ``at`` for a run that left zero on it, the kept start else.

    >>> t0, t1 = datetime(2026, 1, 1), datetime(2026, 1, 2)
    >>> [s and s.day for s in runs_started([0, 3, 2], [1, 4, 0], [None, t0, t0], t1)]
    [2, 1, None]
    """
    return [
        None if run == 0 else at if previous == 0 else start
        for previous, run, start in zip(before, after, starts, strict=True)
    ]


def firing_run_start(
    run: int, before: Sequence[int], starts: Sequence[datetime | None], cases: int, at: datetime
) -> datetime | None:
    """When the run that fired began: the run of ``run`` cases, the CUSUM whose run was
    ``run - cases`` before the increment of ``cases`` (the chart restarts on a signal, so
    only what it held before tells which run fired); None if none was, or its start is not
    known.

    >>> t0, t1 = datetime(2026, 1, 1), datetime(2026, 1, 2)
    >>> firing_run_start(5, [0, 4], [None, t0], 1, t1).day  # the run of four, one more
    1
    >>> firing_run_start(1, [0, 4], [None, t0], 1, t1).day  # a run that began with the case
    2
    """
    return next(
        (
            at if previous == 0 else start
            for previous, start in zip(before, starts, strict=True)
            if previous + cases == run
        ),
        None,
    )
