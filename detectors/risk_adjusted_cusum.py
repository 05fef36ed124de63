"""Risk-adjusted CUSUM: a Bernoulli CUSUM whose in-control rate varies case by case.

Steiner, Cook, Farewell & Treasure (2000), "Monitoring surgical performance using
risk-adjusted cumulative sum charts", Biostatistics 1(4):441-452.

Each case carries its expected probability ``p`` of the adverse event (from a risk model
of the case mix, so sites with harder cases are not flagged for their case mix). The
chart tests "odds of the event multiplied by ``R_A``" against "odds as the model says"
(``R_0 = 1``); the case's log-likelihood-ratio score is

    W = y log(R_A / R_0) - log((1 - p + R_A p) / (1 - p + R_0 p)),

and the chart ``S = max(0, S + W)`` signals at ``S >= h``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import (
    Detector,
    DetectorResult,
    check_binary,
    check_finite,
    check_finite_array,
    check_integer,
)

__all__ = ["RiskAdjustedCUSUM", "risk_adjusted_cusum_arl"]


def _scores(
    risk: npt.NDArray[np.float64], odds_ratio: float, null_odds_ratio: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The scores ``W`` for an event and for a non-event at each risk."""
    log_norm = np.log1p((odds_ratio - 1.0) * risk) - np.log1p((null_odds_ratio - 1.0) * risk)
    return math.log(odds_ratio / null_odds_ratio) - log_norm, -log_norm


def risk_adjusted_cusum_arl(
    risks: npt.ArrayLike,
    odds_ratio: float,
    h: float,
    true_odds_ratio: float = 1.0,
    null_odds_ratio: float = 1.0,
    n_states: int = 1500,
) -> float:
    """ARL (cases, zero start) of the risk-adjusted CUSUM for a case mix given by ``risks``.

    Cases are drawn at random from ``risks`` (an empirical case mix: the expected risks of
    past cases at the site), and each case's event odds are the model's odds times
    ``true_odds_ratio`` (1 gives ARL0, ``odds_ratio`` gives ARL1). Computed with the
    Markov-chain discretisation of Steiner et al. (2000, section 3): the statistic is
    rounded to ``n_states`` cells of ``[0, h)``; the error falls roughly as ``1/n_states``.

    Examples
    --------
    >>> risks = np.linspace(0.02, 0.30, 15)
    >>> round(risk_adjusted_cusum_arl(risks, odds_ratio=2.0, h=2.0))
    188
    """
    r = check_finite_array("risks", risks).ravel()
    if r.size == 0 or not np.all((r >= 0) & (r <= 1)):
        raise ValueError("risks must be a non-empty array of probabilities")
    odds_ratio, h, null_odds_ratio = _check_design(odds_ratio, h, null_odds_ratio)
    true_odds_ratio = check_finite(true_odds_ratio, "true_odds_ratio", positive=True)
    n_states = check_integer("n_states", n_states, minimum=2)
    values, counts = np.unique(r, return_counts=True)
    weights = counts / counts.sum()
    p_event = true_odds_ratio * values / (1.0 - values + true_odds_ratio * values)
    up, down = _scores(values, odds_ratio, null_odds_ratio)
    width = h / (n_states - 0.5)
    centres = np.arange(n_states) * width
    q = np.zeros((n_states, n_states))
    rows = np.repeat(np.arange(n_states), values.size)
    for step, prob in ((up, p_event * weights), (down, (1.0 - p_event) * weights)):
        target = np.maximum(centres[:, None] + step[None, :], 0.0)
        cell = np.rint(target / width).astype(np.int64).ravel()
        mass = np.broadcast_to(prob, (n_states, values.size)).ravel()
        inside = (cell < n_states) & (target.ravel() < h)
        np.add.at(q, (rows[inside], cell[inside]), mass[inside])
    arl = np.linalg.solve(np.eye(n_states) - q, np.ones(n_states))
    return float(arl[0])


def _check_design(
    odds_ratio: float, h: float, null_odds_ratio: float
) -> tuple[float, float, float]:
    """``(odds_ratio, h, null_odds_ratio)`` as positive finite floats, the odds ratios differing."""
    odds_ratio = check_finite(odds_ratio, "odds_ratio", positive=True)
    h = check_finite(h, "h", positive=True)
    null_odds_ratio = check_finite(null_odds_ratio, "null_odds_ratio", positive=True)
    if odds_ratio == null_odds_ratio:
        raise ValueError(f"odds_ratio must differ from null_odds_ratio, both are {odds_ratio}")
    return odds_ratio, h, null_odds_ratio


class RiskAdjustedCUSUM(Detector):
    """Risk-adjusted Bernoulli CUSUM (Steiner et al. 2000) for a change in event odds.

    Feed ``x = 1`` for an adverse event and ``x = 0`` otherwise, with ``risk`` the case's
    expected probability of the event under the registered performance (e.g. the
    predicted probability of a miss given image quality and lesion size).

    Parameters
    ----------
    odds_ratio
        ``R_A``, the multiplicative change in event odds to detect quickly (``> 1`` for a
        deterioration; ``< 1`` builds a chart for an improvement).
    h
        Threshold in log-likelihood-ratio units; choose it for a target ARL0 with
        :func:`risk_adjusted_cusum_arl` on the site's case mix.
    null_odds_ratio
        ``R_0``, the in-control odds ratio (1: the risk model is right).

    Notes
    -----
    Memory: about 300 bytes per instance (``detectors.base.state_size_bytes``),
    independent of the number of cases.

    Examples
    --------
    The odds of a miss double after case 400 at a site with a mixed case difficulty:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> risk = rng.uniform(0.02, 0.30, 800)
    >>> odds = np.where(np.arange(800) < 400, 1.0, 2.0) * risk / (1 - risk)
    >>> miss = rng.random(800) < odds / (1 + odds)
    >>> cusum = RiskAdjustedCUSUM(odds_ratio=2.0, h=4.5)
    >>> for i in range(800):
    ...     if cusum.update(int(miss[i]), risk=float(risk[i])).fired:
    ...         print(f"drift at case {i}")
    ...         break
    drift at case 461
    """

    uses_risk = True

    __slots__ = (
        "odds_ratio",
        "h",
        "null_odds_ratio",
        "_log_ratio",
        "_s",
        "_n_cases",
        "_n_events",
        "_run_length",
    )

    _s: float
    _n_cases: int
    _n_events: int
    _run_length: int

    def __init__(
        self, odds_ratio: float = 2.0, h: float = 4.5, null_odds_ratio: float = 1.0
    ) -> None:
        self.odds_ratio, self.h, self.null_odds_ratio = _check_design(
            odds_ratio, h, null_odds_ratio
        )
        self._log_ratio = math.log(self.odds_ratio / self.null_odds_ratio)
        self.reset()

    def arl(self, risks: npt.ArrayLike, true_odds_ratio: float = 1.0) -> float:
        """This chart's ARL (cases) on the case mix ``risks`` at ``true_odds_ratio``."""
        return risk_adjusted_cusum_arl(
            risks, self.odds_ratio, self.h, true_odds_ratio, self.null_odds_ratio
        )

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        event = check_binary(x)
        p = self._require_risk(risk)
        score = -math.log1p((self.odds_ratio - 1.0) * p) + math.log1p(
            (self.null_odds_ratio - 1.0) * p
        )
        if event:
            score += self._log_ratio
        self._s = max(0.0, self._s + score)
        self._n_cases += 1
        self._n_events += event
        self._run_length = self._run_length + 1 if self._s > 0 else 0
        fired = self._s >= self.h
        result = DetectorResult(
            fired=fired,
            statistic=self._s,
            threshold=self.h,
            n_cases=self._n_cases,
            n_events=self._n_events,
            run_length=self._run_length,
        )
        if fired:
            self.reset()
        return result

    def reset(self) -> None:
        self._s = 0.0
        self._n_cases = 0
        self._n_events = 0
        self._run_length = 0

    def settings(self) -> dict[str, Any]:
        return {"odds_ratio": self.odds_ratio, "h": self.h, "null_odds_ratio": self.null_odds_ratio}

    def _dump_state(self) -> dict[str, Any]:
        return {
            "s": self._s,
            "n_cases": self._n_cases,
            "n_events": self._n_events,
            "run_length": self._run_length,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        s = float(state["s"])
        counts = [state[key] for key in ("n_cases", "n_events", "run_length")]
        # a chart at its threshold has signalled and restarted
        if not 0.0 <= s < self.h:
            raise ValueError(f"statistic must lie in [0, h={self.h}), got {s}")
        if not all(type(c) is int and c >= 0 for c in counts):
            raise ValueError(f"counts must be non-negative integers: {counts}")
        n_cases, n_events, run_length = counts
        if not (n_events <= n_cases and run_length <= n_cases and (s > 0) == (run_length > 0)):
            raise ValueError(f"inconsistent counts: {counts}")
        self._s = s
        self._n_cases, self._n_events, self._run_length = counts
