"""Multi-chart Bernoulli CUSUM: the grid GLR with exact per-chart thresholds (Bonferroni).

The GLR chart of :mod:`detectors.bernoulli_glr_cusum` over a grid of alternatives ``p1_1 <
... < p1_K`` is the largest of K Bernoulli CUSUMs run side by side, each with its own
threshold. There the thresholds come from one common factor found by simulation, which
costs seconds at ARL0 5,000 and does not scale to the ARL0s a fleet budget gives (10^5
charted cases and more: the in-control streams must be run that long). Here each
alternative is a :class:`~detectors.BernoulliCUSUM` on its integer lattice (``gamma_k``
rounded to ``a_k / m_k``), so its ARL is exactly that of a finite Markov chain, and each is
designed by exact computation (:func:`~detectors.bernoulli_cusum_threshold`) for an
in-control ARL of ``K * ARL0``. The chart signals when any CUSUM reaches its threshold and
then restarts all of them.

The guarantee (Bonferroni, conservative)
----------------------------------------
Over any stretch of cases, the union chart raises no more alarms than its K CUSUMs would
raise run alone, each restarting only after its own alarms; so its false alarms per case
are at most ``sum_k 1 / ARL0_k <= 1 / ARL0``, and its in-control ARL (a renewal cycle) is
at least ``ARL0``. Pathwise proof: CUSUM ``k`` restarted at case ``r`` signals at the first
case ``t`` that ends a stretch ``(s, t]``, ``s >= r``, whose log-likelihood ratio reaches
``h_k``. Each alarm the union raises through CUSUM ``k`` ends such a stretch lying after
the union's previous alarm, so these stretches are disjoint; the lone CUSUM picks, again
and again, the earliest-ending stretch after its previous alarm, and that greedy choice
holds the most disjoint stretches ending by any case (interval scheduling). Summing over
``k`` gives the bound, on every sequence of cases, whatever their distribution, so also for
every site whose true rate is at or below ``p0`` (each ``ARL0_k`` only grows as the rate
falls: the CUSUM's run length is stochastically decreasing in the event rate). The bound
spends nothing on the CUSUMs' strong dependence, so the true ARL0 is longer than
designed; the tests report by how much (simulated at the acceptable level with three
alternatives: 1.62 x at ARL0 2,000, 1.48-1.50 x at 5,000).

Cost: K exact threshold searches, each about twenty sparse solves of a chain of ``h_k m_k``
states, banded by ``m_k``: with ``gamma`` rounded to denominators up to 100 (where that
represents it, :func:`multi_cusum_resolution`) under 0.1 s per CUSUM up to ARL0 10^7;
cached.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from detectors.base import (
    Detector,
    DetectorResult,
    check_binary,
    check_finite,
    check_integer,
    check_probability,
)
from detectors.bernoulli_cusum import (
    DEFAULT_RESOLUTION,
    _chain_arl,
    _lattice_threshold,
    bernoulli_cusum_gamma,
    bernoulli_cusum_threshold,
)
from detectors.bernoulli_glr_cusum import (
    _check_alternatives,
    glr_alternatives,
)

__all__ = [
    "BernoulliMultiCUSUM",
    "MultiCUSUMDesign",
    "multi_cusum_design",
    "multi_cusum_resolution",
]

COARSE_RESOLUTION = 100
"""Denominator bound tried first for each ``gamma``: chains of ``h m`` states with a band of
``m``, so a threshold search at ARL0 10^7 takes under 0.1 s (at 1000 up to 2 s)."""

DEFAULT_ALTERNATIVES = 3
"""CUSUMs per chart by default. Each alternative costs the others ``ln K`` nats of threshold:
three kept the grid 0.80 ... 0.60 under 0.818 within 1.12-1.19 x the delay of the CUSUM
designed for each drop at ARL0 180,000 (four: up to 1.23 x; bench/bench_glr_delay.py)."""


@dataclass(frozen=True, slots=True)
class MultiCUSUMDesign:
    """Thresholds of a :class:`BernoulliMultiCUSUM` for an in-control ARL, with their exact ARLs.

    Attributes
    ----------
    h
        Each alternative's threshold in excess events (its lattice value).
    component_arl0
        Exact in-control ARL of each alternative's CUSUM alone, each at least
        ``len(p1) * arl0``.
    arl0_bound
        ``1 / sum(1 / component_arl0)``: the union's in-control ARL is at least this.
    """

    p0: float
    p1: tuple[float, ...]
    arl0: float
    resolution: int
    h: tuple[float, ...]
    component_arl0: tuple[float, ...]
    arl0_bound: float


@functools.lru_cache(maxsize=1024)
def _design(p0: float, p1: tuple[float, ...], arl0: float, resolution: int) -> MultiCUSUMDesign:
    per_chart = len(p1) * arl0
    h = tuple(bernoulli_cusum_threshold(p0, q, per_chart, resolution) for q in p1)
    arls = []
    for q, threshold in zip(p1, h, strict=True):
        gamma = bernoulli_cusum_gamma(p0, q, resolution)
        m = gamma.denominator
        arls.append(_chain_arl(p0, gamma.numerator, m, _lattice_threshold(threshold, m)))
    return MultiCUSUMDesign(
        p0=p0,
        p1=p1,
        arl0=arl0,
        resolution=resolution,
        h=h,
        component_arl0=tuple(arls),
        arl0_bound=1.0 / sum(1.0 / a for a in arls),
    )


def multi_cusum_resolution(p0: float, p1: Sequence[float]) -> int:
    """:data:`COARSE_RESOLUTION` when it represents every alternative's ``gamma`` (within
    :data:`~detectors.bernoulli_cusum.GAMMA_TOLERANCE`), else the default 1000.

    >>> multi_cusum_resolution(0.182, [0.2, 0.4]), multi_cusum_resolution(0.001, [0.0015])
    (100, 1000)
    """
    p0 = check_probability("p0", p0)
    try:
        for q in _check_alternatives(p0, p1):
            bernoulli_cusum_gamma(p0, q, COARSE_RESOLUTION)
    except ValueError:
        return DEFAULT_RESOLUTION
    return COARSE_RESOLUTION


def multi_cusum_design(
    p0: float, p1: Sequence[float], arl0: float, resolution: int = COARSE_RESOLUTION
) -> MultiCUSUMDesign:
    """Each alternative's exact threshold for an in-control ARL of ``len(p1) * arl0`` cases.

    Cached by arguments: every stream of a version shares its design.

    >>> design = multi_cusum_design(0.182, [0.2, 0.26, 0.4], arl0=100_000)
    >>> [round(h, 2) for h in design.h]
    [48.63, 18.37, 9.09]
    >>> design.arl0_bound >= 100_000, min(design.component_arl0) >= 300_000
    (True, True)
    """
    p0 = check_probability("p0", p0)
    rates = _check_alternatives(p0, p1)
    if not check_finite(arl0, "arl0") > 1:
        raise ValueError(f"arl0 must exceed 1 case, got {arl0}")
    resolution = check_integer("resolution", resolution, minimum=1)
    return _design(p0, rates, float(arl0), resolution)


class BernoulliMultiCUSUM(Detector):
    """Largest of K lattice Bernoulli CUSUMs, each against its own threshold: a rise in an
    adverse-event rate above ``p0`` of unknown size, with an exact-ARL (Bonferroni) design.

    Feed ``x = 1`` for an adverse event (a miss among referable cases, or a false positive
    among non-referable cases) and ``x = 0`` otherwise. CUSUM ``k`` is
    ``BernoulliCUSUM(p0, p1[k], h[k], resolution)``; the statistic is ``max_k S_k / h_k``
    (on each lattice) and the chart signals at 1, then restarts every CUSUM. ``run_length``
    is that of the CUSUM nearest its threshold: the estimate of how long ago the change began.

    Parameters
    ----------
    p0
        In-control (acceptable) adverse-event rate, e.g. ``1 - acceptable sensitivity``.
    p1
        Increasing alternatives above ``p0`` (see
        :func:`~detectors.bernoulli_glr_cusum.glr_alternatives`).
    h
        Each alternative's threshold in excess events; use :meth:`for_arl0`.
    resolution
        Largest denominator used to round each ``gamma_k``.

    Notes
    -----
    Memory: K small-int sums and run lengths, two counts and the lattice constants, about
    900 bytes in CPython 3.11 with four alternatives (``detectors.base.state_size_bytes``);
    JSON state about 400 bytes.

    Examples
    --------
    Acceptable sensitivity 0.818 (miss rate 0.182), a fleet-budget ARL0 of 100,000 referable
    cases, and a drop to 0.74 after case 1000:

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> misses = np.concatenate([rng.random(1000) < 0.182, rng.random(2000) < 0.26])
    >>> chart = BernoulliMultiCUSUM.for_arl0(0.182, 100_000, p1_min=0.20, p1_max=0.40)
    >>> chart.p1, chart.arl0 >= 100_000
    ((0.2, 0.2414, 0.4), True)
    >>> for i, miss in enumerate(misses):
    ...     result = chart.update(int(miss))
    ...     if result.fired:
    ...         print(f"drift at case {i}, began near case {i - result.run_length + 1}")
    ...         break
    drift at case 1386, began near case 422
    """

    __slots__ = (
        "p0",
        "p1",
        "h",
        "resolution",
        "_a",
        "_m",
        "_threshold",
        "_s",
        "_run",
        "_n_cases",
        "_n_events",
    )

    _s: list[int]
    _run: list[int]
    _n_cases: int
    _n_events: int

    def __init__(
        self,
        p0: float,
        p1: Sequence[float],
        h: Sequence[float],
        resolution: int = COARSE_RESOLUTION,
    ) -> None:
        self.p0 = check_probability("p0", p0)
        self.p1 = _check_alternatives(self.p0, p1)
        if isinstance(h, str | bytes) or not isinstance(h, Sequence) or len(h) != len(self.p1):
            raise ValueError(f"h must list one threshold per alternative ({len(self.p1)})")
        self.h = tuple(check_finite(v, "h", positive=True) for v in h)
        self.resolution = check_integer("resolution", resolution, minimum=1)
        gammas = [bernoulli_cusum_gamma(self.p0, q, self.resolution) for q in self.p1]
        self._a = tuple(g.numerator for g in gammas)
        self._m = tuple(g.denominator for g in gammas)
        self._threshold = tuple(
            _lattice_threshold(h, m) for h, m in zip(self.h, self._m, strict=True)
        )
        self.reset()

    @classmethod
    def for_arl0(
        cls,
        p0: float,
        arl0: float,
        *,
        p1_min: float,
        p1_max: float,
        n_alternatives: int = DEFAULT_ALTERNATIVES,
    ) -> Self:
        """A chart for rises to ``p1_min`` ... ``p1_max`` with in-control ARL at least ``arl0``
        (at :func:`multi_cusum_resolution`)."""
        p1 = glr_alternatives(p0, p1_min, p1_max, n_alternatives)
        resolution = multi_cusum_resolution(p0, p1)
        return cls(p0, p1, multi_cusum_design(p0, p1, arl0, resolution).h, resolution)

    @property
    def component_arl0(self) -> tuple[float, ...]:
        """Exact in-control ARL of each alternative's CUSUM run alone, in cases."""
        return tuple(
            _chain_arl(self.p0, a, m, n)
            for a, m, n in zip(self._a, self._m, self._threshold, strict=True)
        )

    @property
    def run_lengths(self) -> tuple[int, ...]:
        """Each alternative's cases since its CUSUM last sat at zero (0 at zero): where each
        would place the change. The result's ``run_length`` is that of the CUSUM nearest its
        threshold, the one that fires."""
        return tuple(self._run)

    @property
    def arl0(self) -> float:
        """A lower bound on the chart's in-control ARL: ``1 / sum_k 1 / ARL0_k`` (exact ARLs)."""
        return 1.0 / sum(1.0 / arl for arl in self.component_arl0)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        event = check_binary(x)
        self._check_risk(risk)
        return self._step(1, event)

    def update_counts(self, cases: int, events: int) -> DetectorResult:
        """Feed a batch of ``cases`` with ``events`` adverse events, looking only at its end.

        Each CUSUM adds the batch's whole log-likelihood ratio at once (the binomial CUSUM,
        ``S = max(0, S + events m - cases a)`` on its lattice), so the order of the batch's
        cases does not matter. At the batch's end that is never above what the case-by-case
        CUSUM would hold after the same cases in any order (the case-by-case one is floored
        within the batch too), so the batched chart alarms no earlier, counted in cases, than
        the chart fed the batch one case at a time in the order they happened: its
        in-control ARL is at least the designed one. Used by the pooled per-version stage,
        whose batches are the sites' count increments.
        """
        cases = check_integer("cases", cases, minimum=1)
        events = check_integer("events", events)
        if events > cases:
            raise ValueError(f"events={events} exceeds cases={cases}")
        return self._step(cases, events)

    def _step(self, cases: int, events: int) -> DetectorResult:
        statistic, nearest, fired = 0.0, 0, False
        sums, runs = self._s, self._run
        for k, (a, m, threshold) in enumerate(zip(self._a, self._m, self._threshold, strict=True)):
            s = sums[k] + events * m - cases * a
            if s <= 0:  # at its floor: a zero ratio, never the nearest nor firing
                sums[k] = runs[k] = 0
                continue
            sums[k] = s
            runs[k] += cases
            fired = fired or s >= threshold
            ratio = s / threshold
            if ratio > statistic:
                statistic, nearest = ratio, k
        self._n_cases += cases
        self._n_events += events
        result = DetectorResult(
            fired=fired,
            statistic=statistic,
            threshold=1.0,
            n_cases=self._n_cases,
            n_events=self._n_events,
            run_length=self._run[nearest],
        )
        if fired:
            self.reset()
        return result

    def reset(self) -> None:
        self._s = [0] * len(self.p1)
        self._run = [0] * len(self.p1)
        self._n_cases = 0
        self._n_events = 0

    def settings(self) -> dict[str, Any]:
        return {
            "p0": self.p0,
            "p1": list(self.p1),
            "h": list(self.h),
            "resolution": self.resolution,
        }

    def _dump_state(self) -> dict[str, Any]:
        return {
            "s": list(self._s),
            "run_lengths": list(self._run),
            "n_cases": self._n_cases,
            "n_events": self._n_events,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        sums, runs = state["s"], state["run_lengths"]
        n_cases, n_events = state["n_cases"], state["n_events"]
        k = len(self.p1)
        if not (isinstance(sums, list) and isinstance(runs, list) and len(sums) == len(runs) == k):
            raise ValueError(f"s and run_lengths must be lists of {k} values")
        counts = [n_cases, n_events, *sums, *runs]
        if not all(type(v) is int and v >= 0 for v in counts):
            raise ValueError(f"counts and sums must be non-negative integers: {counts}")
        if n_events > n_cases:
            raise ValueError(f"n_events={n_events} exceeds n_cases={n_cases}")
        for s, run, a, m, threshold in zip(
            sums, runs, self._a, self._m, self._threshold, strict=True
        ):
            # a CUSUM at its threshold has signalled and restarted; events lift s by m - a each
            if not s < threshold:
                raise ValueError(f"s={s} must be below the threshold {threshold} (1/{m})")
            if (s > 0) != (run > 0) or run > n_cases or s > (m - a) * min(run, n_events):
                raise ValueError(f"inconsistent state: s={s}, run_length={run}, n_cases={n_cases}")
        self._s, self._run = list(sums), list(runs)
        self._n_cases, self._n_events = n_cases, n_events

    def running_state_below_thresholds(self, running: Mapping[str, Any]) -> dict[str, Any]:
        """A running state of this chart's layout with each CUSUM's sum kept below its
        threshold, for a state summed under a design with higher thresholds (a stream moved
        to a smaller ARL0). Lowering a sum never makes a CUSUM alarm sooner, so the design's
        false-alarm bound holds. Anything malformed is returned as it is, for
        :meth:`_load_state` to refuse.

        >>> chart = BernoulliMultiCUSUM(0.182, [0.2, 0.4], [2.0, 2.0])
        >>> chart.running_state_below_thresholds(
        ...     {"s": [500, 0], "run_lengths": [40, 0], "n_cases": 40, "n_events": 30})["s"]
        [177, 0]
        """
        sums, runs = running.get("s"), running.get("run_lengths")
        if not (isinstance(sums, list) and isinstance(runs, list) and len(sums) == len(runs)):
            return dict(running)
        if len(sums) != len(self._threshold) or not all(type(s) is int for s in sums):
            return dict(running)
        kept = [min(s, limit - 1) for s, limit in zip(sums, self._threshold, strict=True)]
        return {
            **running,
            "s": kept,
            "run_lengths": [r if s > 0 else 0 for s, r in zip(kept, runs, strict=True)],
        }

    def running_state_from_cusum(
        self, cusum: Mapping[str, Any], p1: float, resolution: int = DEFAULT_RESOLUTION
    ) -> dict[str, Any]:
        """This chart's running state from a :class:`~detectors.BernoulliCUSUM`'s running state
        at the same ``p0`` (tuned to ``p1``): the migration of a stream's single chart.

        The single CUSUM's current run (``run_length`` cases since it last sat at zero) holds
        ``e = (s + a r) / m`` events in ``r`` cases, exactly. Each alternative starts from its
        own log-likelihood ratio over that same run, floored at zero (and kept below its
        threshold): no case the old chart had forgotten is counted, and each value is at most
        what that CUSUM would hold had it run over the same cases since the old chart's last
        restart, so the migrated chart alarms no more often than the designed one (the
        Bonferroni bound still holds) and the evidence of a change under way is kept.
        Raises :class:`ValueError` on a state that no such CUSUM can reach.
        """
        gamma = bernoulli_cusum_gamma(self.p0, p1, resolution)
        s, run = cusum["s"], cusum["run_length"]
        n_cases, n_events = cusum["n_cases"], cusum["n_events"]
        if not all(type(v) is int and v >= 0 for v in (s, run, n_cases, n_events)):
            raise ValueError(f"not a BernoulliCUSUM running state: {dict(cusum)}")
        events, remainder = divmod(s + gamma.numerator * run, gamma.denominator)
        if remainder or events > min(run, n_events) or run > n_cases or (s > 0) != (run > 0):
            raise ValueError(f"inconsistent BernoulliCUSUM running state: {dict(cusum)}")
        sums = [
            min(max(0, events * m - a * run), threshold - 1)
            for a, m, threshold in zip(self._a, self._m, self._threshold, strict=True)
        ]
        return {
            "s": sums,
            "run_lengths": [run if v > 0 else 0 for v in sums],
            "n_cases": n_cases,
            "n_events": n_events,
        }
