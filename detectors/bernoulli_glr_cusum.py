"""Bernoulli GLR CUSUM: a rise in an adverse-event rate above ``p0`` of unknown size.

A Bernoulli CUSUM is tuned to one post-change rate ``p1``; the generalized likelihood
ratio (GLR) chart estimates it instead. With ``p1`` restricted to a grid ``p1_1 < ... <
p1_K`` the GLR over change points and alternatives is, exactly, the largest of the K
Bernoulli CUSUMs run side by side (``sup_k sup_p1 = sup_p1 sup_k``): CUSUM ``k`` holds
``max over change points of the log-likelihood ratio of p1_k against p0`` (in nats), and
its last zero is the maximum-likelihood change point. This chart signals when some CUSUM
reaches its own threshold ``h_k``; its statistic is ``max_k S_k / h_k`` (alarm at 1).

Design, and why not the textbook GLR
------------------------------------
The textbook chart (Lai 1995; Reynolds & Lou 2010; for a proportion Huang, Reynolds &
Wang 2012) compares the GLR with one threshold in nats, maximising over a window of
change points and a continuous MLE ``p1 >= p0``. One threshold serves small shifts badly:
a CUSUM for a small rise needs few nats for a given in-control ARL (ARL0 is about
``e^h / KL(p0 || p1)``), one for a large rise many. At p0 = 0.182 and ARL0 = 5,000 the
optimal CUSUMs for sensitivity 0.80 and 0.60 need 2.1 and 5.9 nats, and a common
threshold for the grid {0.20, 0.26, 0.40} needs 6.0 nats: the 0.80 drop would then take
about 4.5 times the optimal delay. So each alternative keeps its own threshold, as in the
multi-chart CUSUM of Han, Tsung, Hu & Wang (2007); the thresholds are those of the
optimal single-alternative charts (exact Markov chain, :func:`bernoulli_cusum_threshold`)
inflated by one common factor, so every alternative pays the same relative price in
delay for not knowing the shift (an equal-ARL0 allocation, additive in nats, made the
smallest shift pay most: 1.19 x its optimal delay against 1.12 x). The
alternatives are spaced geometrically in the log odds ratio (denser at small shifts,
where a mis-tuned CUSUM loses most). Four of them were enough for the grid 0.80 ... 0.60
(within 1.13 x the CUSUM designed for each drop, at the same ARL0, at p0 = 0.182 and
0.128; see bench/bench_glr_delay.py).

Memory is bounded without a window: each CUSUM forgets on its own (at zero), so the
state is K sums, K run lengths and two counts, unlike a window-limited GLR's buffer.

ARL0 by simulation
------------------
No finite Markov chain describes K coupled CUSUMs, so the common factor is found by
simulation (:func:`glr_design`): ``n_streams`` in-control streams run at once (numpy,
vectorised over streams, blocks of cases and alternatives; within a block
``S_t = Z_t - min(min_{s<=t} Z_s, -S_0)`` with ``Z`` the cumulative log-likelihood
ratios) until the running maximum of ``max_k S_k / h_k^single`` passes a level above the
answer; every stream's first passage time of every level is read off its record values,
so the ARL0 of all factors comes from one run (common random numbers), and the factor
is the midpoint between the two record values that bracket the target. Deterministic
given ``seed``; the design is cached. :func:`glr_arl` estimates any ARL with its Monte
Carlo standard error on independent streams.

Monotone in the event rate
--------------------------
Each CUSUM's update ``S -> max(0, S + a x + b (1 - x))`` has ``a > 0 > b``, so it is
non-decreasing in ``S`` and in ``x`` (in floating point too: rounding is monotone); the
maximum of the ratios is too. Feeding the chart ``x_t = [u_t < p]`` with the same
uniforms ``u_t``, a higher rate ``p`` turns some non-events into events and none back,
so every statistic is pathwise at least as high and the first alarm comes no later: the
run length is stochastically decreasing in the true rate. The in-control ARL designed at
``p0`` is therefore a lower bound on the ARL of every site at or better than ``p0``.

References: Lorden (1971) Ann. Math. Statist. 42:1897-1908; Lai (1995) J. R. Stat. Soc.
B 57:613-658; Han, Tsung, Hu & Wang (2007) Statistica Sinica 17:1139-1164; Reynolds & Lou
(2010) J. Qual. Technol. 42:287-310; Huang, Reynolds & Wang (2012) J. Qual. Technol.
44:192-208; Reynolds & Stoumbos (1999) J. Qual. Technol. 31:87-108.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import (
    Detector,
    DetectorResult,
    check_binary,
    check_finite,
    check_integer,
    check_probability,
)
from detectors.bernoulli_cusum import bernoulli_cusum_threshold

__all__ = [
    "BernoulliGLRCUSUM",
    "GLRDesign",
    "cusum_family_run_lengths",
    "glr_alternatives",
    "glr_arl",
    "glr_design",
    "glr_threshold",
]

DEFAULT_ALTERNATIVES = 4
"""Alternatives in the grid (four met 1.13 x the optimal delays over 0.80 ... 0.60)."""

DEFAULT_STREAMS = 4000
"""In-control streams behind a design: Monte Carlo SE of its ARL0 about 1.6 %."""

_BLOCK = 128
_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _log_likelihood_steps(p0: float, p1: Sequence[float]) -> tuple[_FloatArray, _FloatArray]:
    """Per-case log-likelihood ratio of each ``p1`` against ``p0``: (event, non-event)."""
    alternatives = np.asarray(p1, dtype=np.float64)
    return np.log(alternatives / p0), np.log((1.0 - alternatives) / (1.0 - p0))


def _check_alternatives(p0: float, p1: Sequence[float]) -> tuple[float, ...]:
    if isinstance(p1, str | bytes) or not isinstance(p1, Sequence) or not p1:
        raise ValueError(f"p1 must be a non-empty list of rates, got {p1!r}")
    rates = tuple(check_probability("p1", p) for p in p1)
    if not all(a < b for a, b in zip((p0, *rates), rates, strict=False)):
        raise ValueError(f"p1 must be increasing and above p0={p0} (rises), got {list(p1)}")
    return rates


def glr_alternatives(
    p0: float, p1_min: float, p1_max: float, n: int = DEFAULT_ALTERNATIVES
) -> tuple[float, ...]:
    """``n`` rates from ``p1_min`` to ``p1_max``, geometric in the log odds ratio to ``p0``.

    Rounded to 4 decimals (they are settings a reviewer reads).

    >>> glr_alternatives(0.182, 0.20, 0.40)
    (0.2, 0.2215, 0.2723, 0.4)
    """
    p0 = check_probability("p0", p0)
    p1_min = check_probability("p1_min", p1_min)
    p1_max = check_probability("p1_max", p1_max)
    n = check_integer("n", n, minimum=1)
    if not p0 < p1_min <= p1_max:
        raise ValueError(f"need p0 < p1_min <= p1_max, got {p0}, {p1_min}, {p1_max}")
    if n == 1 or p1_min == p1_max:
        return (round(p1_min, 4),)
    odds0 = p0 / (1.0 - p0)
    low = math.log(p1_min / (1.0 - p1_min) / odds0)
    high = math.log(p1_max / (1.0 - p1_max) / odds0)
    rates = [odds0 * math.exp(r) / (1.0 + odds0 * math.exp(r)) for r in np.geomspace(low, high, n)]
    rounded = tuple(dict.fromkeys(round(p, 4) for p in rates))
    return _check_alternatives(p0, rounded)


# ---------------------------------------------------------------- vectorised simulation


def _records(
    up: _FloatArray,
    down: _FloatArray,
    scale: _FloatArray,
    top: float,
    n_streams: int,
    seed: int,
    rates: tuple[float, float, int],
) -> tuple[_IntArray, _IntArray, _FloatArray]:
    """Record values of ``max_k S_k / scale_k`` on ``n_streams`` streams until each passes ``top``.

    ``rates = (p_before, p_after, change_at)``: case ``t`` (1-based) is an event with
    probability ``p_before`` for ``t <= change_at``, else ``p_after``; the uniform of
    stream ``i`` at case ``t`` depends only on ``(seed, i, t)`` (common random numbers
    across rates and charts). Returns (stream, case, value) of every new running maximum.
    """
    p_before, p_after, change_at = rates
    ids = np.arange(n_streams)
    sums = np.zeros((n_streams, up.size))
    best = np.full(n_streams, -np.inf)
    streams, cases, values = [], [], []
    start = 0
    while ids.size:
        t = start + np.arange(1, _BLOCK + 1)
        rate = np.where(t <= change_at, p_before, p_after)
        block_rng = np.random.default_rng([seed, start // _BLOCK])
        events = block_rng.random((n_streams, _BLOCK))[ids] < rate
        z = np.cumsum(np.where(events[:, :, None], up, down), axis=1)
        s = z - np.minimum(np.minimum.accumulate(z, axis=1), -sums[:, None, :])
        statistic = (s / scale).max(axis=2)
        running = np.maximum.accumulate(np.concatenate([best[:, None], statistic], axis=1), axis=1)
        row, col = np.nonzero(running[:, 1:] > running[:, :-1])
        streams.append(ids[row])
        cases.append(t[col])
        values.append(running[row, col + 1])
        sums, best = s[:, -1, :], running[:, -1]
        going = best < top
        ids, sums, best = ids[going], sums[going], best[going]
        start += _BLOCK
    return np.concatenate(streams), np.concatenate(cases), np.concatenate(values)


def _first_passage(
    n_streams: int, records: tuple[_IntArray, _IntArray, _FloatArray], level: float
) -> _IntArray:
    stream, case, value = records
    passed = value >= level
    times = np.full(n_streams, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(times, stream[passed], case[passed])
    return times


def cusum_family_run_lengths(
    up: Sequence[float],
    down: Sequence[float],
    h: Sequence[float],
    p: float,
    *,
    n_streams: int,
    seed: int,
    p_before: float | None = None,
    change_at: int = 0,
) -> _IntArray:
    """Case of the first alarm of K CUSUMs ``S_k -> max(0, S_k + up_k x + down_k (1 - x))``
    with alarm when some ``S_k >= h_k``, on ``n_streams`` simulated streams.

    Cases ``1 .. change_at`` have event rate ``p_before``, later ones ``p``. Common random
    numbers: stream ``i`` sees the same uniforms ``u_t`` (``x_t = u_t < rate``) whatever
    the rates and the charts, so run lengths of different charts or rates are paired. A
    :class:`~detectors.BernoulliCUSUM` is the one-member family ``up = m - a``,
    ``down = -a``, ``h = its lattice threshold`` (integers, so exact in floating point).
    """
    p = check_probability("p", p)
    before = p if p_before is None else check_probability("p_before", p_before)
    scale = _positive_thresholds("h", h)
    up_array = np.asarray(up, dtype=np.float64)
    down_array = np.asarray(down, dtype=np.float64)
    if not (up_array.shape == down_array.shape == scale.shape and (up_array > 0).all()):
        raise ValueError("up, down and h must have the same length, up > 0")
    if not (down_array < 0).all():
        raise ValueError("down must be negative (each CUSUM drifts down on non-events)")
    n_streams = check_integer("n_streams", n_streams, minimum=1)
    change_at = check_integer("change_at", change_at)
    records = _records(up_array, down_array, scale, 1.0, n_streams, seed, (before, p, change_at))
    return _first_passage(n_streams, records, 1.0)


def _positive_thresholds(name: str, values: Sequence[float]) -> _FloatArray:
    array = np.asarray([check_finite(v, name, positive=True) for v in values], dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    return array


# ---------------------------------------------------------------- design


@dataclass(frozen=True, slots=True)
class GLRDesign:
    """Thresholds of a :class:`BernoulliGLRCUSUM` for an in-control ARL, and how they were found.

    Attributes
    ----------
    h
        Threshold of each alternative's CUSUM, in nats.
    single
        Thresholds of the optimal single-alternative charts at the same ARL0 (exact Markov
        chain), of which ``h`` is ``inflation`` times.
    inflation
        The common factor, found by simulation.
    arl0_estimate, arl0_se
        In-control ARL of ``h`` on the design's own streams, and its Monte Carlo SE.
    """

    p0: float
    p1: tuple[float, ...]
    arl0: float
    h: tuple[float, ...]
    single: tuple[float, ...]
    inflation: float
    arl0_estimate: float
    arl0_se: float
    n_streams: int
    seed: int


def _in_control_records(
    up: _FloatArray,
    down: _FloatArray,
    scale: _FloatArray,
    p0: float,
    arl0: float,
    n_streams: int,
    seed: int,
) -> tuple[tuple[_IntArray, _IntArray, _FloatArray], float]:
    """Records of ``max_k S_k / scale_k`` on in-control streams, run until every stream has
    passed a level ``top`` whose ARL0 is at least ``arl0``; returns them and ``top``.

    ``top`` starts at 1 (the composite alarms no later than each of its charts, whose ARL0
    at factor 1 is ``arl0``) and rises in steps; streams resume where they stopped, so no
    case is simulated twice.
    """
    rng = np.random.default_rng(seed)
    sums = np.zeros((n_streams, up.size))
    best = np.full(n_streams, -np.inf)
    clock = np.zeros(n_streams, dtype=np.int64)
    streams, cases, values = [], [], []
    top = 1.0
    while True:
        ids = np.flatnonzero(best < top)
        while ids.size:
            events = rng.random((ids.size, _BLOCK)) < p0
            z = np.cumsum(np.where(events[:, :, None], up, down), axis=1)
            s = z - np.minimum(np.minimum.accumulate(z, axis=1), -sums[ids, None, :])
            statistic = (s / scale).max(axis=2)
            prior = best[ids, None]
            running = np.maximum.accumulate(np.concatenate([prior, statistic], axis=1), axis=1)
            row, col = np.nonzero(running[:, 1:] > running[:, :-1])
            streams.append(ids[row])
            cases.append(clock[ids[row]] + col + 1)
            values.append(running[row, col + 1])
            sums[ids], best[ids] = s[:, -1, :], running[:, -1]
            clock[ids] += _BLOCK
            ids = ids[best[ids] < top]
        records = (np.concatenate(streams), np.concatenate(cases), np.concatenate(values))
        if _first_passage(n_streams, records, top).mean() >= arl0:
            return records, top
        top += 0.04


@functools.lru_cache(maxsize=256)
def _design(p0: float, p1: tuple[float, ...], arl0: float, n_streams: int, seed: int) -> GLRDesign:
    up, down = _log_likelihood_steps(p0, p1)
    single = np.array(
        [
            bernoulli_cusum_threshold(p0, q, arl0) * (u - d)
            for q, u, d in zip(p1, up, down, strict=True)
        ]
    )
    records, top = _in_control_records(up, down, single, p0, arl0, n_streams, seed)
    # Streams reach the same values by different sums (floating-point rounding apart):
    # values within 1e-9 of each other are one level, and the factor sits midway between
    # two levels, far from any value a chart can take (the detector's sequential sums
    # round differently from the simulation's cumulative ones).
    values = np.unique(np.append(records[2][records[2] < top], top))
    starts = np.flatnonzero(np.diff(values, prepend=-np.inf) > 1e-9 * values)
    lowest, highest = values[starts], np.append(values[starts[1:] - 1], values[-1])
    low, high = -1, starts.size - 1  # invariant: ARL0(lowest[high]) >= arl0 > ARL0(lowest[low])
    while high - low > 1:
        mid = (low + high) // 2
        if _first_passage(n_streams, records, float(lowest[mid])).mean() >= arl0:
            high = mid
        else:
            low = mid
    inflation = float(lowest[high] if low < 0 else (highest[low] + lowest[high]) / 2)
    run_lengths = _first_passage(n_streams, records, inflation)
    return GLRDesign(
        p0=p0,
        p1=p1,
        arl0=arl0,
        h=tuple(float(v) for v in inflation * single),
        single=tuple(float(v) for v in single),
        inflation=inflation,
        arl0_estimate=float(run_lengths.mean()),
        arl0_se=float(run_lengths.std(ddof=1) / math.sqrt(n_streams)),
        n_streams=n_streams,
        seed=seed,
    )


def glr_design(
    p0: float,
    p1: Sequence[float],
    arl0: float,
    *,
    n_streams: int = DEFAULT_STREAMS,
    seed: int = 0,
) -> GLRDesign:
    """Thresholds for in-control ARL ``arl0`` (cases) at rate ``p0``, found by simulation.

    Cached by arguments: the pipeline designs one chart per (claim, policy).

    >>> design = glr_design(0.128, [0.2, 0.4], arl0=2000, n_streams=1000, seed=1)
    >>> [round(h, 2) for h in design.h], round(design.inflation, 3)
    ([3.78, 5.75], 1.076)
    >>> abs(design.arl0_estimate - 2000) < 3 * design.arl0_se
    True
    """
    p0 = check_probability("p0", p0)
    rates = _check_alternatives(p0, p1)
    if not check_finite(arl0, "arl0") > 1:
        raise ValueError(f"arl0 must exceed 1 case, got {arl0}")
    n_streams = check_integer("n_streams", n_streams, minimum=100)
    seed = check_integer("seed", seed)
    return _design(p0, rates, float(arl0), n_streams, seed)


def glr_threshold(
    p0: float,
    p1: Sequence[float],
    arl0: float,
    *,
    n_streams: int = DEFAULT_STREAMS,
    seed: int = 0,
) -> tuple[float, ...]:
    """Each alternative's threshold ``h_k`` (nats) for in-control ARL ``arl0``.

    See :func:`glr_design` (the same cached simulation).
    """
    return glr_design(p0, p1, arl0, n_streams=n_streams, seed=seed).h


def glr_arl(
    p: float,
    p0: float,
    p1: Sequence[float],
    h: Sequence[float],
    *,
    n_streams: int = DEFAULT_STREAMS,
    seed: int = 1,
) -> tuple[float, float]:
    """ARL (cases, from a fresh start) at true event rate ``p``, and its Monte Carlo SE.

    Use a seed other than the design's for an independent check of its ARL0.
    """
    p0 = check_probability("p0", p0)
    up, down = _log_likelihood_steps(p0, _check_alternatives(p0, p1))
    run_lengths = cusum_family_run_lengths(
        up.tolist(), down.tolist(), h, p, n_streams=n_streams, seed=seed
    )
    return float(run_lengths.mean()), float(run_lengths.std(ddof=1) / math.sqrt(n_streams))


# ---------------------------------------------------------------- the detector


class BernoulliGLRCUSUM(Detector):
    """GLR CUSUM for a rise in an adverse-event rate above ``p0``, of unknown size.

    Feed ``x = 1`` for an adverse event (a miss among referable cases, or a false positive
    among non-referable cases) and ``x = 0`` otherwise. One Bernoulli CUSUM (in nats) per
    alternative ``p1_k``; the statistic is ``max_k S_k / h_k`` and the chart signals at 1
    (some CUSUM at its threshold), then restarts. ``run_length`` is that of the CUSUM
    nearest its threshold: the GLR estimate of how long ago the change began.

    Parameters
    ----------
    p0
        In-control (acceptable) adverse-event rate, e.g. ``1 - acceptable sensitivity``.
    p1
        Increasing alternatives above ``p0`` (:func:`glr_alternatives`).
    h
        Threshold of each alternative's CUSUM in nats; use :meth:`for_arl0`.

    Notes
    -----
    Memory: K sums and K run lengths and two counts, about 650 bytes in CPython 3.11 with
    the default four alternatives (``detectors.base.state_size_bytes``); JSON state about
    350 bytes.

    Examples
    --------
    Acceptable sensitivity 0.818 (miss rate 0.182) and a drop to 0.74 after case 1000:

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> misses = np.concatenate([rng.random(1000) < 0.182, rng.random(1000) < 0.26])
    >>> chart = BernoulliGLRCUSUM.for_arl0(0.182, 5000, p1_min=0.20, p1_max=0.40)
    >>> chart.p1
    (0.2, 0.2215, 0.2723, 0.4)
    >>> for i, miss in enumerate(misses):
    ...     result = chart.update(int(miss))
    ...     if result.fired:
    ...         print(f"drift at case {i}, began near case {i - result.run_length + 1}")
    ...         break
    drift at case 1073, began near case 371
    """

    __slots__ = ("p0", "p1", "h", "_up", "_down", "_s", "_run", "_n_cases", "_n_events")

    _s: list[float]
    _run: list[int]
    _n_cases: int
    _n_events: int

    def __init__(self, p0: float, p1: Sequence[float], h: Sequence[float]) -> None:
        self.p0 = check_probability("p0", p0)
        self.p1 = _check_alternatives(self.p0, p1)
        if isinstance(h, str | bytes) or not isinstance(h, Sequence) or len(h) != len(self.p1):
            raise ValueError(f"h must list one threshold per alternative ({len(self.p1)})")
        self.h = tuple(check_finite(v, "h", positive=True) for v in h)
        up, down = _log_likelihood_steps(self.p0, self.p1)
        self._up = tuple(up.tolist())
        self._down = tuple(down.tolist())
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
        n_streams: int = DEFAULT_STREAMS,
        seed: int = 0,
    ) -> Self:
        """A chart for rises to ``p1_min`` ... ``p1_max`` with in-control ARL ``arl0`` cases."""
        p1 = glr_alternatives(p0, p1_min, p1_max, n_alternatives)
        return cls(p0, p1, glr_threshold(p0, p1, arl0, n_streams=n_streams, seed=seed))

    @classmethod
    def for_sensitivity(
        cls,
        acceptable: float,
        arl0: float,
        *,
        detect_from: float = 0.80,
        detect_to: float = 0.60,
        n_alternatives: int = DEFAULT_ALTERNATIVES,
        seed: int = 0,
    ) -> Self:
        """A chart on misses among referable cases: sensitivity below ``acceptable``, tuned
        for drops to anywhere between ``detect_from`` and ``detect_to``."""
        return cls.for_arl0(
            1.0 - acceptable,
            arl0,
            p1_min=1.0 - detect_from,
            p1_max=1.0 - detect_to,
            n_alternatives=n_alternatives,
            seed=seed,
        )

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        event = check_binary(x)
        self._check_risk(risk)
        steps = self._up if event else self._down
        statistic, nearest, fired = 0.0, 0, False
        for k, (s, step, h) in enumerate(zip(self._s, steps, self.h, strict=True)):
            s = s + step
            if s > 0.0:
                self._s[k], self._run[k] = s, self._run[k] + 1
            else:
                self._s[k], self._run[k] = 0.0, 0
            fired = fired or self._s[k] >= h
            if self._s[k] / h > statistic:
                statistic, nearest = self._s[k] / h, k
        self._n_cases += 1
        self._n_events += event
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
        self._s = [0.0] * len(self.p1)
        self._run = [0] * len(self.p1)
        self._n_cases = 0
        self._n_events = 0

    def settings(self) -> dict[str, Any]:
        return {"p0": self.p0, "p1": list(self.p1), "h": list(self.h)}

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
        counts = [n_cases, n_events, *runs]
        if not all(type(v) is int and v >= 0 for v in counts):
            raise ValueError(f"counts must be non-negative integers: {counts}")
        if not all(type(v) in (int, float) and math.isfinite(v) for v in sums):
            raise ValueError(f"s must be finite numbers: {sums}")
        if n_events > n_cases:
            raise ValueError(f"n_events={n_events} exceeds n_cases={n_cases}")
        for s, run, h, up in zip(sums, runs, self.h, self._up, strict=True):
            # a CUSUM at its threshold has signalled and restarted; each of its run's
            # cases raises it by at most one event's log-likelihood ratio
            if not 0.0 <= s < h:
                raise ValueError(f"s={s} must lie in [0, h={h})")
            if (s > 0) != (run > 0) or run > n_cases or s > up * min(run, n_events) * (1 + 1e-9):
                raise ValueError(f"inconsistent state: s={s}, run_length={run}, n_cases={n_cases}")
        self._s = [float(v) for v in sums]
        self._run = list(runs)
        self._n_cases, self._n_events = n_cases, n_events
