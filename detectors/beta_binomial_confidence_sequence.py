"""Anytime-valid claims test: a beta-binomial mixture confidence sequence for a proportion.

Robbins' method of mixtures (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist., the
conjugate-mixture boundaries). For Bernoulli cases with true rate ``p``, the mixture
likelihood ratio

    M_t(p) = B(a + S_t, b + t - S_t) / B(a, b) / (p^S_t (1 - p)^(t - S_t))

(``S_t`` events in ``t`` cases, ``Beta(a, b)`` mixing prior) is a non-negative martingale
with mean one, so by Ville's inequality ``P(M_t(p) >= 1/alpha for some t) <= alpha``.
Hence ``{p : M_t(p) < 1/alpha}`` is a confidence sequence: it covers ``p`` at every case
simultaneously, and a claim may be checked after every case, forever, at level ``alpha``.

One-sided, for a composite claim ("the rate is at most ``p0``", i.e. performance at or
above an acceptable level): the prior truncated to ``[p0, 1]`` gives ``M+_t(p0)``, a mixture
of likelihood ratios ``L(q) / L(p0)`` with ``q >= p0``. Under any true rate ``p <= p0`` each
of them is a non-negative supermartingale (one case multiplies it by ``p q / p0 + (1 - p)
(1 - q) / (1 - p0) <= 1``), hence so is the mixture, and Ville's inequality bounds the chance
of ever rejecting by ``alpha`` for *every* site at or above the acceptable level, not only at
it. The two-sided mixture has no such guarantee below ``p0``: its mass on ``q < p0`` grows
there. Truncation costs little power against rates above ``p0``, where the prior's mass
was going anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Self, get_args

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import betaln, cython_special

from detectors.base import (
    Detector,
    DetectorResult,
    check_binary,
    check_integer,
    check_probability,
)

__all__ = ["BetaBinomialConfidenceSequence", "beta_binomial_log_evidence"]

Verdict = Literal["consistent", "below claim"]
Alternative = Literal["two_sided", "greater"]
LOG_EVIDENCE_FLOOR = -700.0
"""Log-evidence reported when the one-sided mixture's tail underflows (the data sit far below
``p0``: no evidence against it); keeps the statistic a finite JSON number."""


def beta_binomial_log_evidence(
    events: npt.ArrayLike, n: npt.ArrayLike, p: float, a: float, b: float
) -> npt.NDArray[np.float64]:
    """``log M_t(p)`` for arrays of event counts and case counts (vectorised).

    The detector computes the same quantity case by case; this form is for simulation
    and reports.
    """
    s = np.asarray(events, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    out: npt.NDArray[np.float64] = (
        betaln(a + s, b + t - s) - betaln(a, b) - s * math.log(p) - (t - s) * math.log1p(-p)
    )
    return out


_upper_regularized_beta = cython_special.betaincc
"""``scipy.special.betaincc`` on scalars: the routine the ufunc calls, without its array
machinery (once per case of a one-sided test; a third of the ufunc's 3-5 us a call)."""


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


class BetaBinomialConfidenceSequence(Detector):
    """Is the adverse-event rate still consistent with the registered claim?

    Feed ``x = 1`` for an adverse event (a miss among referable cases when testing a
    sensitivity claim, a false positive among non-referable cases for specificity) and
    ``x = 0`` otherwise. The detector fires on the case at which the claimed rate ``p0``
    first leaves the confidence sequence from below (the data show a rate above the
    claim, i.e. performance below it). The verdict then stays ``"below claim"`` until
    :meth:`reset`: there is no automatic restart, because a restarted test would spend
    ``alpha`` again and the type-I error would no longer be held.

    Parameters
    ----------
    p0
        Claimed adverse-event rate, e.g. ``1 - 0.872`` for a claimed sensitivity of 87.2 %.
    alpha
        Probability, under the claim, of ever (at any case, however long monitored)
        concluding "below claim". The test of the one-sided claim uses the two-sided
        sequence, so it is conservative.
    prior_strength
        ``a + b`` of the mixing prior ``Beta(a, b)`` centred on ``p0``. Larger values
        tighten the sequence around a larger number of cases (roughly the number of cases
        at which it is tightest, times ``p0 (1 - p0)``); smaller values favour early, large
        drops.
    alternative
        ``"two_sided"`` (the mixture over every rate) tests the simple claim "the rate is
        ``p0``"; ``"greater"`` (the mixture truncated to rates above ``p0``) tests the
        composite claim "the rate is at most ``p0``", with ``alpha`` held for every true rate
        at or below it (see the module docstring). The pipeline uses ``"greater"`` at the
        acceptable level.

    Notes
    -----
    The statistic is ``log M_t(p0)`` (the log e-value against the claim) and the
    threshold ``log(1 / alpha)``. Memory: about 500 bytes per instance
    (``detectors.base.state_size_bytes``), independent of the number of cases.

    Examples
    --------
    Sensitivity claimed at 0.872; in the field it is 0.80 (miss rate 0.20):

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> misses = rng.random(3000) < 0.20
    >>> cs = BetaBinomialConfidenceSequence.for_sensitivity(claimed=0.872, alpha=0.05)
    >>> for i, miss in enumerate(misses):
    ...     if cs.update(int(miss)).fired:
    ...         print(f"below claim at case {i}")
    below claim at case 120
    >>> cs.verdict
    'below claim'
    >>> [round(1 - v, 3) for v in reversed(cs.interval())]  # sensitivity, after 3000 cases
    [0.771, 0.822]
    """

    __slots__ = (
        "p0",
        "alpha",
        "prior_strength",
        "alternative",
        "_a",
        "_b",
        "_log_threshold",
        "_log_prior",
        "_n_cases",
        "_n_events",
        "_run_length",
        "_rejected",
    )

    _n_cases: int
    _n_events: int
    _run_length: int
    _rejected: bool

    def __init__(
        self,
        p0: float,
        alpha: float = 0.05,
        prior_strength: float = 20.0,
        alternative: Alternative = "two_sided",
    ) -> None:
        self.p0 = check_probability("p0", p0)
        self.alpha = check_probability("alpha", alpha)
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise ValueError(f"prior_strength must be positive, got {prior_strength}")
        if alternative not in get_args(Alternative):
            raise ValueError(f"alternative must be 'two_sided' or 'greater', got {alternative!r}")
        self.prior_strength = float(prior_strength)
        self.alternative: Alternative = alternative
        self._a = self.p0 * self.prior_strength
        self._b = (1.0 - self.p0) * self.prior_strength
        self._log_threshold = math.log(1.0 / self.alpha)
        # The prior's terms of the evidence at the claim: the same every case, and the tail
        # at the prior (small a, b) is the costliest incomplete beta of the two.
        self._log_prior = (_log_beta(self._a, self._b), self._log_tail(self._a, self._b, self.p0))
        self.reset()

    def _log_tail(self, a: float, b: float, p: float) -> float:
        """log P(Beta(a, b) >= p): the one-sided mixture's mass; 0 for the two-sided one."""
        if self.alternative == "two_sided":
            return 0.0
        tail = float(_upper_regularized_beta(a, b, p))
        return math.log(tail) if tail > 0.0 else -math.inf

    @classmethod
    def for_sensitivity(
        cls,
        claimed: float,
        alpha: float = 0.05,
        prior_strength: float = 20.0,
        alternative: Alternative = "two_sided",
    ) -> Self:
        """Test a sensitivity claim; feed ``x = 1`` for each miss among referable cases."""
        return cls(1.0 - claimed, alpha, prior_strength, alternative)

    @classmethod
    def for_specificity(
        cls,
        claimed: float,
        alpha: float = 0.05,
        prior_strength: float = 20.0,
        alternative: Alternative = "two_sided",
    ) -> Self:
        """Test a specificity claim; feed ``x = 1`` for each false positive among negatives."""
        return cls(1.0 - claimed, alpha, prior_strength, alternative)

    def _log_evidence(self, p: float) -> float:
        s, t = self._n_events, self._n_cases
        a, b = self._a, self._b
        # At the claim (every update), the prior's terms are the ones computed once.
        log_beta_prior, log_tail_prior = (
            self._log_prior if p == self.p0 else (_log_beta(a, b), self._log_tail(a, b, p))
        )
        tail = self._log_tail(a + s, b + t - s, p) - log_tail_prior
        evidence = (
            _log_beta(self._a + s, self._b + t - s)
            - log_beta_prior
            - s * math.log(p)
            - (t - s) * math.log1p(-p)
            + tail
        )
        return max(evidence, LOG_EVIDENCE_FLOOR)

    @property
    def verdict(self) -> Verdict:
        """``"below claim"`` once the claim has been rejected, else ``"consistent"``."""
        return "below claim" if self._rejected else "consistent"

    def interval(self) -> tuple[float, float]:
        """The confidence sequence for the adverse-event rate after the cases seen so far.

        Covers the true rate at every case simultaneously with probability ``1 - alpha``.
        """
        if self._n_cases == 0:
            return 0.0, 1.0
        p_hat = self._n_events / self._n_cases
        eps = 1e-12

        def gap(p: float) -> float:
            return self._log_evidence(p) - self._log_threshold

        # p_hat is always inside: the mixture never beats the maximum likelihood
        inside = min(max(p_hat, eps), 1.0 - eps)
        lower = 0.0 if gap(eps) < 0 else float(brentq(gap, eps, inside, xtol=1e-12))
        upper = 1.0 if gap(1.0 - eps) < 0 else float(brentq(gap, inside, 1 - eps, xtol=1e-12))
        return lower, upper

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        event = check_binary(x)
        self._check_risk(risk)
        return self._step(1, event)

    def update_counts(self, cases: int, events: int) -> DetectorResult:
        """Feed a batch of ``cases`` with ``events`` adverse events, looking only at its end.

        The evidence depends on the cumulative counts alone, and Ville's inequality holds at
        every stopping time, so looking once per batch keeps ``alpha`` (it only forgoes the
        looks inside the batch). Used by the pooled per-version stage on the sites' count
        increments.
        """
        cases = check_integer("cases", cases, minimum=1)
        events = check_integer("events", events)
        if events > cases:
            raise ValueError(f"events={events} exceeds cases={cases}")
        return self._step(cases, events)

    def _step(self, cases: int, events: int) -> DetectorResult:
        self._n_cases += cases
        self._n_events += events
        log_evidence = self._log_evidence(self.p0)
        above_claim = self._n_events > self.p0 * self._n_cases
        self._run_length = self._run_length + cases if above_claim else 0
        fired = not self._rejected and above_claim and log_evidence >= self._log_threshold
        self._rejected = self._rejected or fired
        return DetectorResult(
            fired=fired,
            statistic=log_evidence,
            threshold=self._log_threshold,
            n_cases=self._n_cases,
            n_events=self._n_events,
            run_length=self._run_length,
        )

    def reset(self) -> None:
        self._n_cases = 0
        self._n_events = 0
        self._run_length = 0
        self._rejected = False

    def settings(self) -> dict[str, Any]:
        return {
            "p0": self.p0,
            "alpha": self.alpha,
            "prior_strength": self.prior_strength,
            "alternative": self.alternative,
        }

    def _dump_state(self) -> dict[str, Any]:
        return {
            "n_cases": self._n_cases,
            "n_events": self._n_events,
            "run_length": self._run_length,
            "rejected": self._rejected,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        n_cases = check_integer("n_cases", state["n_cases"])
        n_events = check_integer("n_events", state["n_events"])
        run_length = check_integer("run_length", state["run_length"])
        rejected = state["rejected"]
        if not (n_events <= n_cases and run_length <= n_cases and isinstance(rejected, bool)):
            raise ValueError(f"inconsistent state: {dict(state)}")
        if run_length and not n_events > self.p0 * n_cases:
            raise ValueError(f"a run of {run_length} cases needs events above p0: {dict(state)}")
        self._n_cases, self._n_events, self._run_length = n_cases, n_events, run_length
        self._rejected = rejected
        if not rejected and n_cases and self._log_evidence(self.p0) >= self._log_threshold:
            # a test past its threshold that never fired would fire on the next case
            raise ValueError(f"evidence at the threshold but not rejected: {dict(state)}")
