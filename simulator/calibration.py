"""Calibrated scores with a claimed operating point, from two Beta distributions.

If the score of a case is drawn from Beta(a + 1, b) when the case is positive and from
Beta(a, b + 1) when it is negative, with prevalence a / (a + b), then the scores of the
mixed population are Beta(a, b) and P(positive | score) = score exactly: the device is
calibrated at that reference prevalence. The concentration a + b sets how well the
classes separate; :func:`operating_point` solves it, and the threshold, so that the
threshold gives the claimed sensitivity and specificity. At a site whose prevalence
differs, sensitivity and specificity stay the claimed ones (they are class-conditional)
while calibration drifts, exactly as a real device behaves.

Changes (a new scanner, a regressed version) move scores in logit space per class;
:func:`class_shift` finds the shift that gives a target sensitivity or specificity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPSILON = 1e-12
_SCORE_FLOOR = 1e-6


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the Beta(a, b) CDF at ``x`` (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= d * c
        if abs(d * c - 1.0) < _EPSILON:
            break
    return fraction


def beta_quantile(p: float, a: float, b: float) -> float:
    """The ``p`` quantile of Beta(a, b), by bisection (the CDF is monotone)."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if regularized_beta(middle, a, b) < p:
            low = middle
        else:
            high = middle
        if high - low < _EPSILON:
            break
    return (low + high) / 2.0


def logit(p: float) -> float:
    clipped = min(max(p, _SCORE_FLOOR), 1.0 - _SCORE_FLOOR)
    return math.log(clipped / (1.0 - clipped))


def expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True)
class OperatingPoint:
    """Score distributions of a calibrated device and its operating threshold."""

    a: float
    b: float
    threshold: float

    @property
    def reference_prevalence(self) -> float:
        return self.a / (self.a + self.b)

    def sensitivity(self, positive_shift: float = 0.0) -> float:
        """P(score >= threshold | positive), after a logit shift of positive scores."""
        return 1.0 - regularized_beta(self._unshifted(positive_shift), self.a + 1.0, self.b)

    def specificity(self, negative_shift: float = 0.0) -> float:
        """P(score < threshold | negative), after a logit shift of negative scores."""
        return regularized_beta(self._unshifted(negative_shift), self.a, self.b + 1.0)

    def _unshifted(self, shift: float) -> float:
        """The unshifted score that lands exactly on the threshold after ``shift``."""
        return expit(logit(self.threshold) - shift)


def operating_point(sensitivity: float, specificity: float, prevalence: float) -> OperatingPoint:
    """The calibrated device (at ``prevalence``) whose threshold gives the claimed pair.

    Raises ValueError for a pair no such device reaches (e.g. sensitivity + specificity <= 1).

    >>> point = operating_point(0.872, 0.907, 0.24)
    >>> round(point.sensitivity(), 3), round(point.specificity(), 3)
    (0.872, 0.907)
    """
    if not (0 < prevalence < 1 and 0 < sensitivity < 1 and 0 < specificity < 1):
        raise ValueError("sensitivity, specificity and prevalence must lie in (0, 1)")
    if sensitivity + specificity <= 1.0:
        raise ValueError("sensitivity + specificity must exceed 1 for an informative device")

    def specificity_at(log_concentration: float) -> tuple[float, float]:
        concentration = math.exp(log_concentration)
        a, b = prevalence * concentration, (1.0 - prevalence) * concentration
        threshold = beta_quantile(1.0 - sensitivity, a + 1.0, b)
        return regularized_beta(threshold, a, b + 1.0), threshold

    # Specificity at the sensitivity-giving threshold falls as the concentration grows.
    low, high = math.log(1e-3), math.log(1e4)
    if not specificity_at(high)[0] <= specificity <= specificity_at(low)[0]:
        raise ValueError(f"no calibrated Beta device reaches ({sensitivity}, {specificity})")
    for _ in range(100):
        middle = (low + high) / 2.0
        if specificity_at(middle)[0] > specificity:
            low = middle
        else:
            high = middle
    concentration = math.exp((low + high) / 2.0)
    a, b = prevalence * concentration, (1.0 - prevalence) * concentration
    return OperatingPoint(a, b, beta_quantile(1.0 - sensitivity, a + 1.0, b))


def class_shift(point: OperatingPoint, positive: bool, target: float) -> float:
    """The logit shift of one class's scores that moves its rate to ``target``.

    ``target`` is the sensitivity for positives and the specificity for negatives.
    """
    if positive:
        reference = beta_quantile(1.0 - target, point.a + 1.0, point.b)
    else:
        reference = beta_quantile(target, point.a, point.b + 1.0)
    return logit(point.threshold) - logit(reference)


def shifted_score(raw_score: float, shift: float) -> float:
    """``raw_score`` moved by ``shift`` in logit space (0 leaves it unchanged)."""
    if shift == 0.0:
        return raw_score
    return expit(logit(raw_score) + shift)
