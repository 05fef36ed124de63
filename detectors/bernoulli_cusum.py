"""Bernoulli CUSUM for a rise in an adverse-event rate (a fall in sensitivity or specificity).

Reynolds & Stoumbos (1999), "A CUSUM chart for monitoring a proportion when inspecting
continuously", Journal of Quality Technology 31(1):87-108.

Each case scores the log-likelihood ratio of "event rate p1" against "in-control rate
p0"; the CUSUM of those scores, floored at zero, signals when it reaches ``h``. Dividing
the scores by ``ln(p1 (1 - p0) / (p0 (1 - p1)))`` turns them into ``x - gamma`` with

    gamma = ln((1 - p0) / (1 - p1)) / ln(p1 (1 - p0) / (p0 (1 - p1))),

so the statistic counts adverse events in excess of ``gamma`` per case. With ``gamma``
rounded to a fraction ``a / m`` the statistic lives on the integer lattice ``1/m``, and
its run length is exactly that of a finite Markov chain: the ARLs below are exact for
the chart that is actually run (the rounding of ``gamma`` is part of the chart's
definition, not an approximation of its ARL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from detectors.base import (
    Detector,
    DetectorResult,
    check_binary,
    check_finite,
    check_integer,
    check_probability,
)

__all__ = [
    "BernoulliCUSUM",
    "bernoulli_cusum_arl",
    "bernoulli_cusum_arl0",
    "bernoulli_cusum_arl1",
    "bernoulli_cusum_gamma",
    "bernoulli_cusum_threshold",
]

DEFAULT_RESOLUTION = 1000
"""Largest denominator ``m`` used to round ``gamma``; states of the chain = ``h * m``."""

_MAX_STATES = 2_000_000

GAMMA_TOLERANCE = 0.05
"""Largest relative change rounding may make to ``gamma``: beyond it the chart run would be
tuned to a visibly different shift than the one designed (a toy lattice of 1/3 is 3.5 % off;
claims such as 0.872 or 0.907 at the default resolution are 1e-5 off)."""


def bernoulli_cusum_gamma(p0: float, p1: float, resolution: int = DEFAULT_RESOLUTION) -> Fraction:
    """The reference value ``gamma`` rounded to a fraction ``a / m`` with ``m <= resolution``.

    Raises :class:`ValueError` when the rounding moves ``gamma`` by more than
    :data:`GAMMA_TOLERANCE` or out of ``(p0, p1)``: the rates are too extreme for the
    resolution, and the chart that would run is not the one designed.

    >>> bernoulli_cusum_gamma(0.128, 0.20, resolution=100)
    Fraction(11, 68)
    """
    p0 = check_probability("p0", p0)
    p1 = check_probability("p1", p1)
    if not p1 > p0:
        raise ValueError(f"p1 must exceed p0 (a rise in the event rate), got p0={p0}, p1={p1}")
    resolution = check_integer("resolution", resolution, minimum=1)
    gamma = math.log((1 - p0) / (1 - p1)) / math.log(p1 * (1 - p0) / (p0 * (1 - p1)))
    rounded = Fraction(gamma).limit_denominator(resolution)
    # gamma lies in (p0, p1); rounded outside it, the chart drifts up in control or down at p1
    if not (p0 < rounded < p1 and abs(rounded - gamma) <= GAMMA_TOLERANCE * gamma):
        raise ValueError(
            f"p0={p0} and p1={p1} are too extreme for resolution={resolution}: gamma={gamma:.3g} "
            f"would round to {rounded}, a different chart; raise the resolution well above "
            f"1/gamma = {1 / gamma:.3g} or monitor less extreme rates"
        )
    return rounded


def _lattice_threshold(h: float, m: int) -> int:
    # the smallest lattice point >= h; a tolerance keeps 4.2 * 5 from becoming 22
    return max(1, math.ceil(h * m - 1e-9))


def _chain_arl(p: float, a: int, m: int, n_states: int) -> float:
    """Zero-state ARL of the integer chain S -> max(0, S + m x - a), signal at S >= n_states."""
    if n_states > _MAX_STATES:
        raise ValueError(f"chain of {n_states} states is too large; lower resolution or h")
    up = m - a
    states = np.arange(n_states)
    up_to = states + up
    down_to = np.maximum(states - a, 0)
    keep_up = up_to < n_states
    rows = np.concatenate([states[keep_up], states])
    cols = np.concatenate([up_to[keep_up], down_to])
    vals = np.concatenate([np.full(int(keep_up.sum()), p), np.full(n_states, 1.0 - p)])
    q = sp.csr_matrix((vals, (rows, cols)), shape=(n_states, n_states))
    system = sp.identity(n_states, format="csr") - q
    arl = spsolve(system.tocsc(), np.ones(n_states))
    return float(np.atleast_1d(arl)[0])


def bernoulli_cusum_arl(
    p: float, p0: float, p1: float, h: float, resolution: int = DEFAULT_RESOLUTION
) -> float:
    """Exact zero-state ARL, in cases, of the Bernoulli CUSUM when the true event rate is ``p``.

    Parameters
    ----------
    p
        The true adverse-event rate.
    p0, p1
        In-control rate and the rate the chart is tuned to detect (``p1 > p0``).
    h
        Threshold in excess events (the statistic's unit); rounded up to the lattice ``1/m``.
    resolution
        Largest denominator used to round ``gamma`` (see :func:`bernoulli_cusum_gamma`).

    Examples
    --------
    >>> round(bernoulli_cusum_arl(0.128, 0.128, 0.20, h=4.0), 1)
    387.9
    """
    p = check_probability("p", p, open_interval=False)
    h = check_finite(h, "h", positive=True)
    gamma = bernoulli_cusum_gamma(p0, p1, resolution)
    a, m = gamma.numerator, gamma.denominator
    if p == 0.0:
        return math.inf
    return _chain_arl(p, a, m, _lattice_threshold(h, m))


def bernoulli_cusum_arl0(
    p0: float, p1: float, h: float, resolution: int = DEFAULT_RESOLUTION
) -> float:
    """In-control ARL (true rate ``p0``), in cases."""
    return bernoulli_cusum_arl(p0, p0, p1, h, resolution)


def bernoulli_cusum_arl1(
    p0: float, p1: float, h: float, resolution: int = DEFAULT_RESOLUTION
) -> float:
    """Out-of-control ARL at the design shift (true rate ``p1``), in cases, from a zero start."""
    return bernoulli_cusum_arl(p1, p0, p1, h, resolution)


def bernoulli_cusum_threshold(
    p0: float, p1: float, arl0: float, resolution: int = DEFAULT_RESOLUTION
) -> float:
    """The smallest threshold ``h`` whose exact in-control ARL is at least ``arl0`` cases.

    The chart is discrete, so ARL0 moves in steps as ``h`` moves along the lattice; the
    returned ``h`` never undershoots the target (its ARL0 is reported by
    :func:`bernoulli_cusum_arl0`).

    Examples
    --------
    >>> h = bernoulli_cusum_threshold(0.128, 0.20, arl0=5000, resolution=100)
    >>> h, round(bernoulli_cusum_arl0(0.128, 0.20, h, resolution=100))
    (8.205882352941176, 5012)
    """
    if not check_finite(arl0, "arl0") > 1:
        raise ValueError(f"arl0 must exceed 1 case, got {arl0}")
    p0 = check_probability("p0", p0)
    gamma = bernoulli_cusum_gamma(p0, p1, resolution)
    a, m = gamma.numerator, gamma.denominator

    def arl_at(n: int) -> float:
        return _chain_arl(p0, a, m, n)

    low, high = 1, m
    while arl_at(high) < arl0:
        low, high = high, 2 * high
        if high > _MAX_STATES:
            raise ValueError(f"arl0={arl0} needs more than {_MAX_STATES} chain states")
    if arl_at(low) >= arl0:
        return low / m
    while high - low > 1:  # invariant: arl(low) < arl0 <= arl(high)
        mid = (low + high) // 2
        if arl_at(mid) >= arl0:
            high = mid
        else:
            low = mid
    return high / m


class BernoulliCUSUM(Detector):
    """Bernoulli CUSUM for a rise in an adverse-event rate from ``p0`` to ``p1``.

    Feed ``x = 1`` for an adverse event (a miss among referable cases, or a false
    positive among non-referable cases) and ``x = 0`` otherwise. The statistic is the
    CUSUM in excess-event units (see the module docstring), on the lattice ``1/m``.
    After a signal the chart restarts from zero, so consecutive signals are separated
    by fresh evidence.

    Parameters
    ----------
    p0
        In-control adverse-event rate, e.g. ``1 - claimed sensitivity``.
    p1
        The rate to detect quickly (``p1 > p0``).
    h
        Threshold in excess events; use :meth:`for_arl0` to choose it for a target
        in-control ARL. Rounded up to the lattice ``1/m``.
    resolution
        Largest denominator ``m`` used to round ``gamma``.

    Notes
    -----
    Memory: slots of small ints and floats only, about 420 bytes per instance in
    CPython 3.11 (``detectors.base.state_size_bytes``); the JSON state is about 220 bytes.

    Examples
    --------
    Sensitivity claimed at 0.872 (miss rate 0.128) falls to 0.77 after case 1000;
    the first signal, and the CUSUM's estimate of when the change began:

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> misses = np.concatenate([rng.random(1000) < 0.128, rng.random(500) < 0.23])
    >>> cusum = BernoulliCUSUM.for_arl0(p0=0.128, p1=0.20, arl0=5000, resolution=100)
    >>> round(cusum.arl0), round(cusum.arl1)
    (5012, 176)
    >>> for i, miss in enumerate(misses):
    ...     result = cusum.update(int(miss))
    ...     if result.fired:
    ...         print(f"drift at case {i}, began near case {i - result.run_length + 1}")
    ...         break
    drift at case 1090, began near case 1013
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
        "_n_cases",
        "_n_events",
        "_run_length",
    )

    _s: int
    _n_cases: int
    _n_events: int
    _run_length: int

    def __init__(
        self, p0: float, p1: float, h: float, resolution: int = DEFAULT_RESOLUTION
    ) -> None:
        self.p0 = check_probability("p0", p0)
        self.p1 = check_probability("p1", p1)
        self.h = check_finite(h, "h", positive=True)
        self.resolution = check_integer("resolution", resolution, minimum=1)
        gamma = bernoulli_cusum_gamma(self.p0, self.p1, self.resolution)
        self._a = gamma.numerator
        self._m = gamma.denominator
        self._threshold = _lattice_threshold(self.h, self._m)
        self.reset()

    @classmethod
    def for_arl0(
        cls, p0: float, p1: float, arl0: float, resolution: int = DEFAULT_RESOLUTION
    ) -> Self:
        """A chart whose exact in-control ARL is the smallest lattice value >= ``arl0`` cases."""
        return cls(p0, p1, bernoulli_cusum_threshold(p0, p1, arl0, resolution), resolution)

    @classmethod
    def for_sensitivity(
        cls, claimed: float, detect: float, arl0: float, resolution: int = DEFAULT_RESOLUTION
    ) -> Self:
        """A chart on misses among referable cases: sensitivity ``claimed`` falling to ``detect``.

        The chart's cases are the referable cases with ground truth.
        """
        return cls.for_arl0(1.0 - claimed, 1.0 - detect, arl0, resolution)

    @classmethod
    def for_specificity(
        cls, claimed: float, detect: float, arl0: float, resolution: int = DEFAULT_RESOLUTION
    ) -> Self:
        """A chart on false positives among non-referable cases: specificity falling."""
        return cls.for_arl0(1.0 - claimed, 1.0 - detect, arl0, resolution)

    @property
    def gamma(self) -> Fraction:
        """The reference value actually used, ``a / m``."""
        return Fraction(self._a, self._m)

    @property
    def arl0(self) -> float:
        """Exact in-control ARL of this chart, in cases."""
        return _chain_arl(self.p0, self._a, self._m, self._threshold)

    @property
    def arl1(self) -> float:
        """Exact zero-state ARL at the design rate ``p1``, in cases."""
        return _chain_arl(self.p1, self._a, self._m, self._threshold)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        event = check_binary(x)
        self._check_risk(risk)
        self._s = max(0, self._s + event * self._m - self._a)
        self._n_cases += 1
        self._n_events += event
        self._run_length = self._run_length + 1 if self._s > 0 else 0
        fired = self._s >= self._threshold
        result = DetectorResult(
            fired=fired,
            statistic=self._s / self._m,
            threshold=self._threshold / self._m,
            n_cases=self._n_cases,
            n_events=self._n_events,
            run_length=self._run_length,
        )
        if fired:
            self.reset()
        return result

    def reset(self) -> None:
        self._s = 0
        self._n_cases = 0
        self._n_events = 0
        self._run_length = 0

    def settings(self) -> dict[str, Any]:
        return {"p0": self.p0, "p1": self.p1, "h": self.h, "resolution": self.resolution}

    def _dump_state(self) -> dict[str, Any]:
        return {
            "s": self._s,
            "n_cases": self._n_cases,
            "n_events": self._n_events,
            "run_length": self._run_length,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        values = {k: state[k] for k in ("s", "n_cases", "n_events", "run_length")}
        if not all(type(v) is int and v >= 0 for v in values.values()):
            raise ValueError(f"counts must be non-negative integers: {values}")
        s, n_cases, n_events, run_length = values.values()
        # a chart at its threshold has signalled and restarted; events lift s by m - a each
        if not s < self._threshold:
            raise ValueError(f"s={s} must be below the threshold {self._threshold} (1/{self._m})")
        consistent = (
            n_events <= n_cases
            and run_length <= n_cases
            and (s > 0) == (run_length > 0)
            and s <= (self._m - self._a) * n_events
        )
        if not consistent:
            raise ValueError(f"inconsistent counts: {values}")
        self._s, self._n_cases, self._n_events, self._run_length = s, n_cases, n_events, run_length
