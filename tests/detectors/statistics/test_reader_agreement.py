"""Reader agreement (item 10): kappas vs scikit-learn, statsmodels and a published example."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.statistics import agreement_table, cohen_kappa, cohen_kappa_from_table, fleiss_kappa

# Fleiss' kappa worked example (10 subjects, 14 raters, 5 categories), kappa = 0.210
# as printed in the Wikipedia article "Fleiss' kappa" (P-bar = 0.378, P-bar-e = 0.213).
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

grades = st.integers(min_value=2, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
    )
)


def _reads(seed: int, n: int = 300) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n)
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, 4, n), truth)
    return truth.tolist(), noisy.tolist()


@settings(deadline=None, max_examples=60)
@given(grades, st.sampled_from([None, "linear", "quadratic"]))
def test_cohen_kappa_matches_scikit_learn(
    pair: tuple[list[int], list[int]], weights: str | None
) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    a, b = pair
    if len(set(a) | set(b)) < 2 or (len(set(a)) == 1 and len(set(b)) == 1):
        return  # kappa undefined: chance agreement is 1
    expected = metrics.cohen_kappa_score(a, b, weights=weights)
    if not np.isfinite(expected):
        return
    assert cohen_kappa(a, b, weights).kappa == pytest.approx(expected, abs=1e-10)  # type: ignore[arg-type]


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_standard_errors_match_statsmodels(weights: str | None) -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    table = agreement_table(*_reads(1))
    expected = inter_rater.cohens_kappa(table, wt=weights)
    estimate = cohen_kappa_from_table(table, weights)  # type: ignore[arg-type]
    assert estimate.kappa == pytest.approx(expected.kappa, rel=1e-12)
    assert estimate.se == pytest.approx(expected.std_kappa, rel=1e-10)
    assert estimate.se_null == pytest.approx(expected.std_kappa0, rel=1e-10)


def test_cohen_kappa_interval_matches_statsmodels() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    table = agreement_table(*_reads(2))
    expected = inter_rater.cohens_kappa(table)  # its interval is at alpha = 0.05
    estimate = cohen_kappa_from_table(table, alpha=0.05)
    assert (estimate.lower, estimate.upper) == pytest.approx(
        (expected.kappa_low, expected.kappa_upp), rel=1e-10
    )


def test_cohen_kappa_interval_covers_the_true_kappa_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(3)
    truth = np.array([[0.20, 0.05], [0.10, 0.65]])
    kappa_true = cohen_kappa_from_table(truth * 1e6).kappa
    covered = 0
    for _ in range(400):
        table = rng.multinomial(200, truth.ravel()).reshape(2, 2)
        estimate = cohen_kappa_from_table(table)
        covered += estimate.lower <= kappa_true <= estimate.upper
    assert 0.92 <= covered / 400 <= 0.98


def test_unused_grades_are_kept_when_categories_are_given() -> None:
    table = agreement_table(["R0", "R1"], ["R1", "R1"], categories=["R0", "R1", "R2", "R3"])
    assert table.shape == (4, 4) and table.sum() == 2


def test_a_label_outside_the_categories_is_rejected() -> None:
    with pytest.raises(ValueError):
        agreement_table(["R0", "R9"], ["R0", "R0"], categories=["R0", "R1"])


def test_fleiss_kappa_reproduces_the_published_example() -> None:
    assert round(fleiss_kappa(FLEISS_EXAMPLE).kappa, 3) == 0.210


def test_fleiss_kappa_matches_statsmodels() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(4)
    prevalence = rng.dirichlet(np.ones(4), size=200)
    table = np.array([rng.multinomial(3, p) for p in prevalence])
    expected = inter_rater.fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(table).kappa == pytest.approx(expected, rel=1e-12)


def test_fleiss_kappa_with_two_readers_equals_scotts_pi() -> None:
    # With two readers Fleiss' kappa is Scott's pi (Fleiss 1971): statsmodels' "randolph"
    # is another measure, so compare with Scott's pi computed from the pooled marginals.
    a, b = _reads(5)
    table = np.zeros((len(a), 4))
    np.add.at(table, (np.arange(len(a)), a), 1)
    np.add.at(table, (np.arange(len(b)), b), 1)
    pooled = (np.bincount(a, minlength=4) + np.bincount(b, minlength=4)) / (2 * len(a))
    observed = np.mean(np.array(a) == np.array(b))
    scotts_pi = (observed - (pooled**2).sum()) / (1 - (pooled**2).sum())
    assert fleiss_kappa(table).kappa == pytest.approx(scotts_pi, rel=1e-12)


def test_fleiss_bootstrap_interval_is_seeded_and_contains_the_estimate() -> None:
    first, second = fleiss_kappa(FLEISS_EXAMPLE, seed=7), fleiss_kappa(FLEISS_EXAMPLE, seed=7)
    assert first == second
    assert first.lower < first.kappa < first.upper


def test_fleiss_kappa_rejects_unequal_numbers_of_readers() -> None:
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 1], [1, 1]])
