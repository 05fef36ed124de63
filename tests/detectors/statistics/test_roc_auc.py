"""AUC with DeLong's variance: vs scikit-learn, scipy, the 1988 definition and the bootstrap."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr
from scipy.stats import mannwhitneyu

from detectors.statistics import delong_covariance, delong_test, roc_auc, roc_auc_ci

FloatArray = npt.NDArray[np.float64]


def _binormal(
    rng: np.random.Generator, n_positive: int, n_negative: int, separation: float
) -> tuple[FloatArray, FloatArray]:
    """Labels and scores with N(separation, 1) positives and N(0, 1) negatives."""
    y = np.r_[np.ones(n_positive), np.zeros(n_negative)]
    score = np.r_[rng.normal(separation, 1.0, n_positive), rng.normal(0.0, 1.0, n_negative)]
    return y, score


def _binormal_auc(separation: float) -> float:
    return float(ndtr(separation / np.sqrt(2.0)))


def _paired_versions(
    rng: np.random.Generator, shift_a: float, shift_b: float, n_pos: int = 80, n_neg: int = 220
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Two device versions scoring the same cases; a shared case effect correlates them."""
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    case_effect = rng.normal(0.0, 1.0, y.size)
    a = shift_a * y + case_effect + rng.normal(0.0, 0.7, y.size)
    b = shift_b * y + case_effect + rng.normal(0.0, 0.7, y.size)
    return y, a, b


def _stratified_bootstrap_aucs(
    y: FloatArray, *scores: FloatArray, repeats: int = 1000
) -> FloatArray:
    """scikit-learn AUCs of each score set on case resamples that keep the class counts."""
    metrics = pytest.importorskip("sklearn.metrics")
    utils = pytest.importorskip("sklearn.utils")
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = np.empty((repeats, len(scores)))
    for seed in range(repeats):
        cases = np.r_[
            utils.resample(positives, random_state=2 * seed),
            utils.resample(negatives, random_state=2 * seed + 1),
        ]
        out[seed] = [metrics.roc_auc_score(y[cases], score[cases]) for score in scores]
    return out


def _delong_1988_variance(y: FloatArray, score: FloatArray) -> float:
    """DeLong et al. (1988) eqs. for V10, V01, S10, S01 by the explicit pairwise kernel."""
    pos, neg = score[y == 1], score[y == 0]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    auc = kernel.mean()
    s10 = ((v10 - auc) ** 2).sum() / (pos.size - 1)
    s01 = ((v01 - auc) ** 2).sum() / (neg.size - 1)
    return float(s10 / pos.size + s01 / neg.size)


labelled_scores = st.integers(min_value=4, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),  # coarse grades force ties
    )
)


def _usable(y: list[int]) -> bool:
    return 2 <= sum(y) <= len(y) - 2


@settings(deadline=None, max_examples=80)
@given(labelled_scores)
def test_auc_matches_scikit_learn_with_ties(data: tuple[list[int], list[int]]) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    y, score = data
    if not _usable(y):
        return
    assert roc_auc(y, score) == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)


@settings(deadline=None, max_examples=80)
@given(labelled_scores)
def test_auc_is_the_mann_whitney_u_of_scipy_over_the_pairs(
    data: tuple[list[int], list[int]],
) -> None:
    y, score = np.asarray(data[0]), np.asarray(data[1], dtype=float)
    if not _usable(data[0]):
        return
    u = mannwhitneyu(score[y == 1], score[y == 0]).statistic
    m, n = int(y.sum()), int((1 - y).sum())
    assert roc_auc_ci(y, score).auc == pytest.approx(u / (m * n), abs=1e-12)


@settings(deadline=None, max_examples=80)
@given(labelled_scores)
def test_fast_delong_variance_equals_the_1988_pairwise_definition(
    data: tuple[list[int], list[int]],
) -> None:
    y, score = np.asarray(data[0], dtype=float), np.asarray(data[1], dtype=float)
    if not _usable(data[0]):
        return
    assert roc_auc_ci(y, score).variance == pytest.approx(
        _delong_1988_variance(y, score), rel=1e-9, abs=1e-15
    )


def test_covariance_matrix_diagonal_holds_each_score_sets_own_variance() -> None:
    y, a, b = _paired_versions(np.random.default_rng(1), 1.0, 1.5)
    aucs, cov = delong_covariance(y, a, b)
    assert cov[0, 0] == pytest.approx(roc_auc_ci(y, a).variance, rel=1e-12)
    assert cov[1, 1] == pytest.approx(roc_auc_ci(y, b).variance, rel=1e-12)
    assert cov[0, 1] == pytest.approx(cov[1, 0], rel=1e-12)
    assert aucs[1] == pytest.approx(roc_auc(y, b), abs=1e-12)


def test_delong_variance_agrees_with_a_stratified_bootstrap_of_scikit_learn() -> None:
    y, score = _binormal(np.random.default_rng(2), 150, 350, separation=1.5)
    boot = _stratified_bootstrap_aucs(y, score)[:, 0]
    assert roc_auc_ci(y, score).se == pytest.approx(boot.std(ddof=1), rel=0.08)


def test_logit_interval_agrees_with_the_bootstrap_percentile_interval() -> None:
    y, score = _binormal(np.random.default_rng(3), 150, 350, separation=1.8)
    boot = _stratified_bootstrap_aucs(y, score)[:, 0]
    estimate = roc_auc_ci(y, score, method="logit")
    lower, upper = np.quantile(boot, [0.025, 0.975])
    assert (estimate.lower, estimate.upper) == pytest.approx((lower, upper), abs=0.006)


@pytest.mark.parametrize("method", ["logit", "normal"])
def test_interval_covers_the_true_auc_at_about_the_nominal_rate(method: str) -> None:
    rng = np.random.default_rng(4)
    separation, repeats = 1.2, 2000
    true_auc = _binormal_auc(separation)  # 0.802
    covered = 0
    for _ in range(repeats):
        estimate = roc_auc_ci(*_binormal(rng, 60, 140, separation), method=method)  # type: ignore[arg-type]
        covered += estimate.lower <= true_auc <= estimate.upper
    # Monte Carlo standard error of the coverage is 0.005 at 2000 repeats
    assert covered / repeats == pytest.approx(0.95, abs=0.015)


def test_logit_interval_stays_inside_zero_one_near_a_perfect_device() -> None:
    y, score = _binormal(np.random.default_rng(5), 30, 70, separation=3.5)
    estimate = roc_auc_ci(y, score, method="logit")
    assert 0.0 < estimate.lower < estimate.auc < estimate.upper < 1.0


def test_interval_collapses_to_the_point_for_perfect_separation() -> None:
    estimate = roc_auc_ci([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9])
    assert (estimate.auc, estimate.variance, estimate.lower, estimate.upper) == (1.0, 0, 1, 1)


def test_reversed_scores_mirror_the_auc_and_keep_its_variance() -> None:
    y, score = _binormal(np.random.default_rng(6), 40, 90, separation=1.0)
    forward, backward = roc_auc_ci(y, score), roc_auc_ci(y, -score)
    assert backward.auc == pytest.approx(1.0 - forward.auc, abs=1e-12)
    assert backward.variance == pytest.approx(forward.variance, rel=1e-12)


def test_interval_is_invariant_to_a_monotone_recalibration_of_the_scores() -> None:
    y, score = _binormal(np.random.default_rng(7), 40, 90, separation=1.0)
    probability = 1.0 / (1.0 + np.exp(-(0.7 * score - 2.0)))
    assert roc_auc_ci(y, probability) == roc_auc_ci(y, score)


def test_delong_test_holds_its_size_for_two_versions_with_equal_auc() -> None:
    rng = np.random.default_rng(8)
    repeats = 2000
    rejections = sum(
        delong_test(*_paired_versions(rng, 1.2, 1.2)).p_value < 0.05 for _ in range(repeats)
    )
    assert rejections / repeats == pytest.approx(0.05, abs=0.015)


def test_delong_test_detects_a_better_version_on_the_same_cases() -> None:
    y, v1, v2 = _paired_versions(np.random.default_rng(9), 1.0, 1.6)
    result = delong_test(y, v2, v1, alternative="greater")
    assert result.difference > 0 and result.p_value < 0.01


def test_pairing_shrinks_the_standard_error_of_the_difference() -> None:
    y, a, b = _paired_versions(np.random.default_rng(10), 1.2, 1.4)
    paired = delong_test(y, a, b)
    independent_se = np.hypot(roc_auc_ci(y, a).se, roc_auc_ci(y, b).se)
    assert paired.correlation > 0.3
    assert paired.se < 0.9 * independent_se


def test_delong_difference_se_agrees_with_a_paired_bootstrap() -> None:
    y, a, b = _paired_versions(np.random.default_rng(11), 1.0, 1.3)
    boot = _stratified_bootstrap_aucs(y, a, b)
    differences = boot[:, 0] - boot[:, 1]
    assert delong_test(y, a, b).se == pytest.approx(differences.std(ddof=1), rel=0.08)


def test_one_sided_p_values_split_the_two_sided_one() -> None:
    y, a, b = _paired_versions(np.random.default_rng(12), 1.3, 1.0)
    two = delong_test(y, a, b).p_value
    greater = delong_test(y, a, b, alternative="greater").p_value
    less = delong_test(y, a, b, alternative="less").p_value
    assert greater == pytest.approx(two / 2.0, rel=1e-12)
    assert greater + less == pytest.approx(1.0, abs=1e-12)


def test_a_score_set_compared_with_itself_gives_no_evidence() -> None:
    y, a, _ = _paired_versions(np.random.default_rng(13), 1.0, 1.0)
    result = delong_test(y, a, a)
    assert (result.difference, result.z, result.p_value) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("y", "score"),
    [
        ([0, 1, 1, 1], [0.1, 0.2, 0.3, 0.4]),  # a single negative
        ([0, 0, 1, 2], [0.1, 0.2, 0.3, 0.4]),  # a label that is not 0/1
        ([0, 0, 1, 1], [0.1, float("nan"), 0.3, 0.4]),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3]),  # one score short
    ],
)
def test_invalid_input_is_rejected(y: list[int], score: list[float]) -> None:
    with pytest.raises(ValueError):
        roc_auc_ci(y, score)
