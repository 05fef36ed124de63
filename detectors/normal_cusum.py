"""Tabular (Page) CUSUM for a shift in the mean of a normal series, with its ARL.

For continuous monitors such as the mean score or calibration-in-the-large. With
``z = (x - target) / sigma`` the two one-sided statistics are

    C+ = max(0, C+ + z - k),     C- = max(0, C- - z - k),

and the chart signals when either exceeds ``h`` (Montgomery, *Introduction to
Statistical Quality Control*, section 9.1). ``k`` and ``h`` are in units of ``sigma``.

ARLs come from three independent routes: the Brook & Evans (1972) Markov chain, the
Nystrom (Gauss-Legendre) solution of Page's integral equation, and Siegmund's (1985)
approximation. Two-sided ARLs combine the one-sided ones by Kemp's / Lucas & Crosier's
(1982) rule ``1/ARL = 1/ARL+ + 1/ARL-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from detectors.base import Detector, DetectorResult, check_finite, check_integer

__all__ = [
    "NormalCUSUM",
    "normal_cusum_arl",
    "normal_cusum_threshold",
    "siegmund_arl",
]

_Z_CLIP = 1e12

Side = Literal["both", "upper", "lower"]
Method = Literal["integral", "markov", "siegmund"]


def _one_sided_integral(drift: float, h: float, n_nodes: int) -> float:
    """Zero-state ARL of ``S -> max(0, S + Y)``, ``Y ~ N(drift, 1)``, signal at ``S > h``.

    Page's integral equation ``L(u) = 1 + L(0) Phi(-u - drift) + int_0^h L(y) phi(y - u -
    drift) dy`` solved by the Nystrom method on Gauss-Legendre nodes, with ``L(0)`` as an
    extra unknown.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    y = 0.5 * h * (nodes + 1.0)
    w = 0.5 * h * weights
    u = np.concatenate([[0.0], y])  # the equation is imposed at 0 and at every node
    diff = y[None, :] - u[:, None] - drift
    kernel = np.exp(-0.5 * diff * diff) / math.sqrt(2.0 * math.pi) * w[None, :]
    a = np.zeros((n_nodes + 1, n_nodes + 1))
    a[:, 0] = -ndtr(-u - drift)
    a[:, 1:] = -kernel
    a[np.diag_indices_from(a)] += 1.0
    solution = np.linalg.solve(a, np.ones(n_nodes + 1))
    return float(solution[0])


def _one_sided_markov(drift: float, h: float, n_states: int) -> float:
    """Brook & Evans (1972): the statistic rounded to ``n_states`` cells of ``[0, h]``.

    State 0 is ``[0, w/2)``; state ``j >= 1`` is ``[(j - 1/2) w, (j + 1/2) w)`` with
    ``w = h / (n_states - 1/2)``; a value above ``h`` is absorption.
    """
    w = h / (n_states - 0.5)
    centres = np.arange(n_states) * w
    edges = (np.arange(n_states + 1) - 0.5) * w  # upper edge of cell j is edges[j + 1]
    edges[0] = -np.inf
    cdf = ndtr(edges[None, :] - centres[:, None] - drift)
    q = np.diff(cdf, axis=1)
    system = np.eye(n_states) - q
    return float(np.linalg.solve(system, np.ones(n_states))[0])


def _siegmund_one_sided(drift: float, h: float) -> float:
    b = h + 1.166
    if abs(drift) < 1e-12:
        return b * b
    return (math.exp(-2.0 * drift * b) + 2.0 * drift * b - 1.0) / (2.0 * drift * drift)


def siegmund_arl(shift: float, k: float, h: float, side: Side = "both") -> float:
    """Siegmund's approximation to the ARL (in cases) of the tabular CUSUM.

    ``shift`` is the true mean shift in units of sigma. For the upper side
    ``ARL = (exp(-2 D b) + 2 D b - 1) / (2 D^2)`` with ``D = shift - k`` and
    ``b = h + 1.166`` (``b^2`` when ``D = 0``).

    >>> round(siegmund_arl(0.0, 0.5, 4.0, side="upper"), 1)
    338.1
    """
    shift, k, h = _check_chart(shift, k, h)
    upper = _siegmund_one_sided(shift - k, h)
    lower = _siegmund_one_sided(-shift - k, h)
    return _combine(upper, lower, side)


def _check_chart(shift: float, k: float, h: float) -> tuple[float, float, float]:
    """``(shift, k, h)`` as finite floats with ``k >= 0`` and ``h > 0``, or ValueError."""
    shift, k, h = check_finite(shift, "shift"), check_finite(k, "k"), check_finite(h, "h")
    if k < 0 or h <= 0:
        raise ValueError(f"need k >= 0 and h > 0, got k={k}, h={h}")
    return shift, k, h


def _combine(upper: float, lower: float, side: Side) -> float:
    if side == "upper":
        return upper
    if side == "lower":
        return lower
    if side == "both":
        return 1.0 / (1.0 / upper + 1.0 / lower)
    raise ValueError(f"side must be 'both', 'upper' or 'lower', got {side!r}")


def normal_cusum_arl(
    shift: float,
    k: float = 0.5,
    h: float = 4.0,
    side: Side = "both",
    method: Method = "integral",
    n: int | None = None,
) -> float:
    """ARL (in cases, zero start) of the tabular CUSUM when the mean is ``shift`` sigma off target.

    Parameters
    ----------
    shift
        True mean shift in units of sigma (0 gives ARL0).
    k, h
        Reference value and decision interval, in units of sigma.
    side
        ``"both"`` (two-sided chart), ``"upper"`` or ``"lower"``.
    method
        ``"integral"`` (Nystrom solution of Page's integral equation, accurate to ~1e-9
        with the default 64 nodes), ``"markov"`` (Brook & Evans, default 800 states,
        error of order ``1/n^2``) or ``"siegmund"`` (approximation).
    n
        Nodes or states for the numerical methods.

    Examples
    --------
    Montgomery's table of the two-sided chart with k = 1/2 and h = 4:

    >>> [round(normal_cusum_arl(d, 0.5, 4.0), 2) for d in (0.0, 0.5, 1.0, 2.0)]
    [167.68, 26.63, 8.38, 3.34]
    """
    shift, k, h = _check_chart(shift, k, h)
    if n is not None:
        n = check_integer("n", n, minimum=2)
    if method == "siegmund":
        return siegmund_arl(shift, k, h, side)
    if method == "integral":
        nodes = 64 if n is None else n
        upper = _one_sided_integral(shift - k, h, nodes)
        lower = _one_sided_integral(-shift - k, h, nodes) if side != "upper" else math.inf
    elif method == "markov":
        states = 800 if n is None else n
        upper = _one_sided_markov(shift - k, h, states)
        lower = _one_sided_markov(-shift - k, h, states) if side != "upper" else math.inf
    else:
        raise ValueError(f"method must be 'integral', 'markov' or 'siegmund', got {method!r}")
    return _combine(upper, lower, side)


def normal_cusum_threshold(arl0: float, k: float = 0.5, side: Side = "both") -> float:
    """The decision interval ``h`` (sigma units) whose in-control ARL is ``arl0`` cases.

    >>> round(normal_cusum_threshold(370.4, k=0.5), 3)
    4.775
    """
    # an infinite arl0 would double h forever
    if not check_finite(arl0, "arl0") > 1:
        raise ValueError(f"arl0 must exceed 1, got {arl0}")
    if check_finite(k, "k") < 0:
        raise ValueError(f"need k >= 0, got k={k}")

    def gap(h: float) -> float:
        return math.log(normal_cusum_arl(0.0, k, h, side)) - math.log(arl0)

    high = 1.0
    while gap(high) < 0:
        high *= 2.0
    return float(brentq(gap, 1e-6, high, xtol=1e-10))


class NormalCUSUM(Detector):
    """Tabular CUSUM for a shift of the mean of a roughly normal per-case value.

    Parameters
    ----------
    target
        In-control mean (e.g. the mean score on the registration test set).
    sigma
        In-control standard deviation of one case's value.
    k
        Reference value in sigma units; ``k = delta / 2`` is optimal for a shift of
        ``delta`` sigma.
    h
        Decision interval in sigma units; the chart signals when a side *exceeds* it.
        Use :func:`normal_cusum_threshold` for a target ARL0.
    side
        ``"both"``, ``"upper"`` (detect increases) or ``"lower"`` (detect decreases).

    Notes
    -----
    The reported ``statistic`` is the larger of the monitored sides' CUSUMs (sigma units);
    ``n_events`` counts the cases that pushed that side up (``z`` beyond ``k``). Both
    sides restart at zero after a signal. Memory: about 470 bytes per instance
    (``detectors.base.state_size_bytes``), independent of the number of cases.

    Examples
    --------
    The mean score drifts up by one sigma after case 200:

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> scores = np.concatenate([rng.normal(0.30, 0.1, 200), rng.normal(0.40, 0.1, 100)])
    >>> cusum = NormalCUSUM(target=0.30, sigma=0.1, k=0.5, h=5.0)
    >>> for i, score in enumerate(scores):
    ...     result = cusum.update(score)
    ...     if result.fired:
    ...         print(f"drift at case {i}, began near case {i - result.run_length + 1}")
    ...         break
    drift at case 209, began near case 197
    """

    __slots__ = (
        "target",
        "sigma",
        "k",
        "h",
        "side",
        "_upper",
        "_lower",
        "_n_cases",
        "_n_up",
        "_n_down",
        "_run_up",
        "_run_down",
    )

    _upper: float
    _lower: float
    _n_cases: int
    _n_up: int
    _n_down: int
    _run_up: int
    _run_down: int

    def __init__(
        self, target: float, sigma: float, k: float = 0.5, h: float = 5.0, side: Side = "both"
    ) -> None:
        self.target = check_finite(target, "target")
        self.sigma = check_finite(sigma, "sigma", positive=True)
        _, self.k, self.h = _check_chart(0.0, k, h)
        if side not in ("both", "upper", "lower"):
            raise ValueError(f"side must be 'both', 'upper' or 'lower', got {side!r}")
        self.side: Side = side
        self.reset()

    def arl(self, shift: float = 0.0) -> float:
        """This chart's ARL (cases) at a true mean shift of ``shift`` sigma."""
        return normal_cusum_arl(shift, self.k, self.h, self.side)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        value = check_finite(x)
        self._check_risk(risk)
        # a value beyond +-1e12 sigma signals at once either way; clipping keeps overflow out
        z = min(max((value - self.target) / self.sigma, -_Z_CLIP), _Z_CLIP)
        upper = max(0.0, self._upper + z - self.k) if self.side != "lower" else 0.0
        lower = max(0.0, self._lower - z - self.k) if self.side != "upper" else 0.0
        self._upper, self._lower = upper, lower
        self._n_cases += 1
        self._n_up += int(z > self.k)
        self._n_down += int(-z > self.k)
        self._run_up = self._run_up + 1 if upper > 0 else 0
        self._run_down = self._run_down + 1 if lower > 0 else 0
        up_side = upper >= lower
        statistic = upper if up_side else lower
        fired = statistic > self.h
        result = DetectorResult(
            fired=fired,
            statistic=statistic,
            threshold=self.h,
            n_cases=self._n_cases,
            n_events=self._n_up if up_side else self._n_down,
            run_length=self._run_up if up_side else self._run_down,
        )
        if fired:
            self.reset()
        return result

    def reset(self) -> None:
        self._upper = 0.0
        self._lower = 0.0
        self._n_cases = 0
        self._n_up = 0
        self._n_down = 0
        self._run_up = 0
        self._run_down = 0

    def settings(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sigma": self.sigma,
            "k": self.k,
            "h": self.h,
            "side": self.side,
        }

    def _dump_state(self) -> dict[str, Any]:
        return {
            "upper": self._upper,
            "lower": self._lower,
            "n_cases": self._n_cases,
            "n_up": self._n_up,
            "n_down": self._n_down,
            "run_up": self._run_up,
            "run_down": self._run_down,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        upper, lower = float(state["upper"]), float(state["lower"])
        # a side above h has signalled and restarted; an unmonitored side stays at 0
        if not (0.0 <= upper <= self.h and 0.0 <= lower <= self.h):
            raise ValueError(f"CUSUMs must lie in [0, h={self.h}]: {upper}, {lower}")
        if (self.side == "lower" and upper > 0) or (self.side == "upper" and lower > 0):
            raise ValueError(f"the side not monitored ({self.side!r} chart) must be 0")
        counts = [state[key] for key in ("n_cases", "n_up", "n_down", "run_up", "run_down")]
        if not all(type(c) is int and c >= 0 for c in counts):
            raise ValueError(f"counts must be non-negative integers: {counts}")
        n_cases, n_up, n_down, run_up, run_down = counts
        consistent = (
            n_up + n_down <= n_cases
            and run_up <= n_cases
            and run_down <= n_cases
            and (upper > 0) == (run_up > 0)
            and (lower > 0) == (run_down > 0)
        )
        if not consistent:
            raise ValueError(f"inconsistent counts: {counts}")
        self._upper, self._lower = upper, lower
        self._n_cases, self._n_up, self._n_down, self._run_up, self._run_down = counts
