"""Fleiss' kappa's bootstrap interval covers the population kappa at its nominal rate."""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from detectors.statistics import fleiss_kappa

PREVALENCE = np.array([0.5, 0.3, 0.2])
SUBJECTS, READERS, ACCURACY, REPLICATIONS = 80, 4, 0.7, 400


def simulated_table(rng: np.random.Generator) -> np.ndarray:
    """Reader counts per subject and category when kappa is exactly ``ACCURACY**2``.

    Each subject has a latent category drawn from ``PREVALENCE``; each reading is that
    category with probability ``ACCURACY`` and otherwise an independent draw from
    ``PREVALENCE``. Two readings of a subject then agree with probability
    ``a^2 + (1 - a^2) sum p_j^2`` while the category margins stay ``p``, so the
    population Fleiss kappa is ``a^2``.
    """
    k = PREVALENCE.size
    latent = rng.choice(k, size=SUBJECTS, p=PREVALENCE)
    own = rng.random((SUBJECTS, READERS)) < ACCURACY
    reads = np.where(own, latent[:, None], rng.choice(k, size=(SUBJECTS, READERS), p=PREVALENCE))
    return np.stack([(reads == j).sum(axis=1) for j in range(k)], axis=1)


def test_bootstrap_interval_covers_the_population_kappa_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    kappa = ACCURACY**2
    covered = 0
    for replication in range(REPLICATIONS):
        estimate = fleiss_kappa(simulated_table(rng), alpha=0.05, n_bootstrap=500, seed=replication)
        covered += estimate.lower <= kappa <= estimate.upper
    # the count lies outside this range with probability 0.001 when coverage is 95 %
    low, high = binom.ppf(0.0005, REPLICATIONS, 0.95), binom.isf(0.0005, REPLICATIONS, 0.95)
    assert low <= covered <= high
