"""Prior (label) shift: a new prevalence estimated from unlabelled calibrated scores.

A device's scores are calibrated at the prevalence of the data it was calibrated on, its
*reference prevalence* ``pi0``: ``p = P(y = 1 | x)`` there. At a site whose prevalence is
``pi1`` the class-conditional distributions ``P(x | y)`` (and so sensitivity and
specificity) stay the same, but the posterior moves by Bayes' theorem to

    p1 = (pi1 / pi0) p / ((pi1 / pi0) p + (1 - pi1) / (1 - pi0) (1 - p)),

that is ``logit p1 = logit p + logit pi1 - logit pi0``. ``pi1`` is unknown without
labels; Saerens, Latinne & Decaestecker (2002, "Adjusting the outputs of a classifier to
new a priori probabilities: a simple procedure", Neural Computation 14(1):21-41) estimate
it by EM: adjust the posteriors to the current estimate (E step), take their mean as the
next estimate (M step). Each step increases the likelihood of the scores as a two-class
mixture with known class likelihood ratio, which is concave in ``pi1``, so EM converges
to its maximum (the MLE), on the boundary 0 or 1 when the scores push it there (for
instance when every score is the same and differs from ``pi0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.base import check_finite, check_finite_array, check_integer, check_probability

__all__ = [
    "PriorShift",
    "adjust_to_prevalence",
    "adjusted_posterior_slope",
    "estimate_prevalence",
    "prevalence_standard_error",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PriorShift:
    """The EM estimate of the prevalence of unlabelled cases.

    ``converged`` is False when ``max_iter`` steps did not bring two successive
    estimates within ``tol``; ``prevalence`` is then the last iterate (EM's likelihood
    never decreases, so it is still better than the reference prevalence it started from).
    """

    prevalence: float
    reference_prevalence: float
    iterations: int
    converged: bool


def _check_scores(scores: npt.ArrayLike) -> FloatArray:
    p = check_finite_array("scores", scores).ravel()
    if p.size == 0:
        raise ValueError("scores must not be empty")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("scores must be calibrated probabilities in [0, 1]")
    return p


def _check_weights(weights: npt.ArrayLike | None, size: int) -> FloatArray:
    if weights is None:
        return np.ones(size)
    w = check_finite_array("weights", weights).ravel()
    if w.shape != (size,):
        raise ValueError(f"weights need one value per score ({size}), got {w.size}")
    if np.any(w < 0.0):
        raise ValueError("weights must be non-negative")
    if not w.sum() > 0.0:
        raise ValueError("weights must not all be zero")
    return w


def _adjust(p: FloatArray, reference: float, prevalence: float) -> FloatArray:
    up = prevalence / reference * p
    down = (1.0 - prevalence) / (1.0 - reference) * (1.0 - p)
    total = up + down
    # total is 0 only at a boundary prevalence with a score on the other boundary
    # (prevalence 0 and p = 1, or 1 and 0): the evidence is certain there, keep the score.
    safe = np.where(total > 0.0, total, 1.0)
    return np.where(total > 0.0, up / safe, p)


def adjust_to_prevalence(
    scores: npt.ArrayLike, reference_prevalence: float, prevalence: float
) -> FloatArray:
    """Posteriors calibrated at ``reference_prevalence`` moved to ``prevalence`` (Bayes).

    ``prevalence`` may be 0 or 1 (an EM estimate on the boundary); scores of exactly 0
    and 1 stay where they are (certain evidence), except that every other score goes to
    the boundary prevalence.

    Examples
    --------
    >>> adjust_to_prevalence([0.1, 0.5, 0.9], reference_prevalence=0.5, prevalence=0.2)
    array([0.02702703, 0.2       , 0.69230769])
    """
    p = _check_scores(scores)
    reference = check_probability("reference_prevalence", reference_prevalence)
    prevalence = check_probability("prevalence", prevalence, open_interval=False)
    return _adjust(p, reference, float(prevalence))


def adjusted_posterior_slope(
    scores: npt.ArrayLike, reference_prevalence: float, prevalence: float
) -> FloatArray:
    """Derivative of each adjusted posterior with respect to ``prevalence``.

    ``p (1 - p) / (pi0 (1 - pi0) D**2)`` with ``D`` the denominator of the adjustment;
    the delta method needs it to carry an estimated prevalence's error into the metrics.
    """
    p = _check_scores(scores)
    reference = check_probability("reference_prevalence", reference_prevalence)
    prevalence = check_probability("prevalence", prevalence, open_interval=False)
    return _slope(p, reference, float(prevalence))


def _slope(p: FloatArray, reference: float, prevalence: float) -> FloatArray:
    total = prevalence / reference * p + (1.0 - prevalence) / (1.0 - reference) * (1.0 - p)
    numerator = p * (1.0 - p) / (reference * (1.0 - reference))
    safe = np.where(total > 0.0, total, 1.0)
    return np.where(total > 0.0, numerator / (safe * safe), 0.0)


def estimate_prevalence(
    scores: npt.ArrayLike,
    reference_prevalence: float,
    weights: npt.ArrayLike | None = None,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> PriorShift:
    """EM estimate of the prevalence of unlabelled cases (Saerens et al. 2002).

    Parameters
    ----------
    scores
        Posteriors ``P(y = 1 | x)`` calibrated at ``reference_prevalence``, in [0, 1].
    reference_prevalence
        The prevalence the scores are calibrated at, in (0, 1).
    weights
        Optional non-negative case weights (counts when ``scores`` are the means of
        histogram bins).
    max_iter, tol
        EM stops when two successive estimates differ by less than ``tol``, or after
        ``max_iter`` steps (then ``converged`` is False: slow convergence happens when the
        maximum lies on the boundary or the scores hardly separate the classes).

    Examples
    --------
    Two Gaussian classes, scores calibrated at prevalence 0.3, cases drawn at 0.1:

    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> rng = np.random.default_rng(1)
    >>> positive = rng.random(20_000) < 0.1
    >>> x = rng.normal(np.where(positive, 1.5, 0.0), 1.0)
    >>> odds = 0.3 / 0.7 * norm.pdf(x, 1.5) / norm.pdf(x, 0.0)
    >>> shift = estimate_prevalence(odds / (1 + odds), reference_prevalence=0.3)
    >>> round(shift.prevalence, 3), shift.converged
    (0.098, True)
    """
    p = _check_scores(scores)
    reference = check_probability("reference_prevalence", reference_prevalence)
    w = _check_weights(weights, p.size)
    max_iter = check_integer("max_iter", max_iter, minimum=1)
    tol = check_finite(tol, "tol", positive=True)
    w = w / w.sum()
    prevalence = reference
    for iteration in range(1, max_iter + 1):
        updated = float(np.clip(np.dot(w, _adjust(p, reference, prevalence)), 0.0, 1.0))
        step = abs(updated - prevalence)
        prevalence = updated
        if step < tol or prevalence in (0.0, 1.0):  # the boundaries are fixed points
            return PriorShift(prevalence, reference, iteration, True)
    return PriorShift(prevalence, reference, max_iter, False)


def prevalence_standard_error(
    scores: npt.ArrayLike,
    reference_prevalence: float,
    prevalence: float,
    weights: npt.ArrayLike | None = None,
) -> float:
    """Sandwich standard error of an EM prevalence estimate over samples of cases.

    The EM fixed point solves ``sum_i (q_i - pi) = 0`` with ``q_i`` the adjusted
    posteriors; linearised, ``se = sqrt(sum_i w_i (q_i - pi)**2) / |sum_i w_i (1 - q_i')|``
    (``q'`` from :func:`adjusted_posterior_slope`, ``w`` the case weights, counts). ``inf``
    when the scores cannot tell the classes apart (the denominator vanishes: the prevalence
    is not identified), ``nan`` on the boundary 0 or 1 where the linearisation fails.
    """
    p = _check_scores(scores)
    reference = check_probability("reference_prevalence", reference_prevalence)
    w = _check_weights(weights, p.size)
    prevalence = check_probability("prevalence", prevalence, open_interval=False)
    if prevalence in (0.0, 1.0):
        return math.nan
    q = _adjust(p, reference, float(prevalence))
    information = float(np.dot(w, 1.0 - _slope(p, reference, float(prevalence))))
    if information <= 1e-12 * float(w.sum()):
        return math.inf
    return math.sqrt(float(np.dot(w, (q - prevalence) ** 2))) / information
