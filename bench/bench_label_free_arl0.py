"""In-control ARL of the label-free drift tests with the reference each stream really has
(issue 16, item 4): a simulation, not a test.

Each simulated stream draws its own reference from an in-control distribution, as a
stream of the pipeline does (``MonitorPolicy().score_reference_cases`` = 500 predictions),
then runs ``--windows`` windows of ``score_window`` = 250 predictions from the same
distribution. Every alarm is a false alarm. Per stream, the ARL0 is its cases over its
false alarms (its run length when it raised none: censored, shown as ">"); across the
fleet, the rate-based ARL0 is all cases over all false alarms. Both are set against the
nominal ARL0 the test is designed for.

Score drift (:class:`detectors.WindowedKSDrift`, deciles of the score scale, nominal
``arl0_cases`` = 5,000): streams cycle through four in-control score distributions, a
screening device's calibrated scores at prevalence 0.24 (negatives Beta(1, 4.17),
positives Beta(2, 3.17): the marginal of calibrated scores), a sharper screening device at
0.24 (Beta(0.6, 6) and Beta(4, 1.5)), a Beta(2, 5), and a low-prevalence device whose
scores crowd into the first decile (Beta(0.5, 8)).

Acquisition drift (:class:`detectors.WindowedChiSquareDrift` with ``fire_on_unseen``,
nominal 4 x 5,000 = 20,000 per dimension, as ``design_acquisition_drift`` gives four
dimensions): each stream's mix has 2 to 8 categories, Dirichlet(2) shares, of which up to
two are rare (0.2 % to 2 %). A rare category missing from the reference fires as "unseen"
whenever it comes back: those alarms are counted apart.

``before`` is the previous release: a fixed 500-case reference and asymptotic critical
values (Kolmogorov's distribution at ``en = n w / (n + w)``; chi-square on the columns
present). ``after`` is this release as the pipeline designs it (``StreamMonitor``):
bootstrap-calibrated critical values, reference growing from passing windows to 20
windows. ``conditional`` gives each stream's ARL0 given its reference(s) exactly (the
expected alarms of each window over 20,000 simulated windows, no Poisson noise in it).

``chi_square_carry`` measures the critical value a growing chi-square test carries between
its calibrations against a fresh calibration's.

Writes bench/results/label_free_arl0.json and a markdown table beside it. Runtime: about
3.5 minutes on 2 cores with the defaults; ``--quick`` in seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import beta, chi2

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from detectors import WindowedChiSquareDrift  # noqa: E402
from detectors import reference_calibration as calibration  # noqa: E402
from detectors.statistics.kolmogorov_smirnov import ks_critical_value  # noqa: E402
from streams.detector_design import SCORE_EDGES  # noqa: E402
from streams.monitor_policy import MonitorPolicy  # noqa: E402
from streams.stream_monitor import StreamMonitor  # noqa: E402

RESULTS = REPOSITORY / "bench" / "results"
POLICY = MonitorPolicy()
ACQUISITION_DIMENSIONS = 4
"""``design_acquisition_drift`` shares the ARL0 among the dimensions (Bonferroni)."""
CONDITIONAL_WINDOWS = 20_000

Counts = npt.NDArray[np.int64]


def _decile_probabilities(cdf: Any) -> npt.NDArray[np.float64]:
    edges = np.asarray(SCORE_EDGES)
    cumulative = np.concatenate([[0.0], cdf(edges), [1.0]])
    probabilities: npt.NDArray[np.float64] = np.diff(cumulative)
    return probabilities


SCORE_DISTRIBUTIONS: dict[str, npt.NDArray[np.float64]] = {
    "calibrated screening, prevalence 0.24": _decile_probabilities(
        lambda x: 0.76 * beta.cdf(x, 1, 4.1667) + 0.24 * beta.cdf(x, 2, 3.1667)
    ),
    "sharp screening, prevalence 0.24": _decile_probabilities(
        lambda x: 0.76 * beta.cdf(x, 0.6, 6) + 0.24 * beta.cdf(x, 4, 1.5)
    ),
    "Beta(2, 5)": _decile_probabilities(lambda x: beta.cdf(x, 2, 5)),
    "low prevalence, Beta(0.5, 8)": _decile_probabilities(lambda x: beta.cdf(x, 0.5, 8)),
}


def acquisition_mix(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A site's category shares: 2-8 categories, up to two of them rare (0.2 %-2 %)."""
    k = int(rng.integers(2, 9))
    rare = int(rng.integers(0, min(2, k - 1) + 1))
    shares = rng.choice([0.002, 0.005, 0.01, 0.02], size=rare)
    common = rng.dirichlet(np.full(k - rare, 2.0)) * (1.0 - shares.sum())
    mix: npt.NDArray[np.float64] = np.concatenate([common, shares])
    return mix


@dataclass
class StreamRun:
    """One stream's in-control run: its cases and false alarms, and the expected alarms
    given its references (``conditional``)."""

    cases: int
    alarms: int
    unseen_alarms: int
    expected_alarms: float
    expected_unseen_alarms: float
    distribution: str


def _score_fires_before(reference: Counts, windows: Counts, alpha: float) -> npt.NDArray[np.bool_]:
    n, w = int(reference.sum()), int(windows[0].sum())
    critical = ks_critical_value(alpha, n, w)
    fires: npt.NDArray[np.bool_] = calibration.ks_distances(reference, windows) >= critical
    return fires


def score_stream(
    rng: np.random.Generator, name: str, release: str, n_windows: int, simulated: Counts
) -> StreamRun:
    """A score stream of ``release`` ("before" or "after") in control for ``n_windows``."""
    p = SCORE_DISTRIBUTIONS[name]
    window, arl0 = POLICY.score_window, POLICY.arl0_cases
    reference = calibration.multinomial_draws(rng, POLICY.score_reference_cases, p, 1)[0]
    windows = calibration.multinomial_draws(rng, window, p, n_windows)
    if release == "before":
        fires = _score_fires_before(reference, windows, window / arl0)
        rate = float(_score_fires_before(reference, simulated, window / arl0).mean())
        return StreamRun(n_windows * window, int(fires.sum()), 0, rate * n_windows, 0.0, name)
    monitor = StreamMonitor(policy=POLICY, score_reference=reference.tolist())
    drift = monitor._score_drift()  # as the pipeline designs it for this reference
    alarms, expected, size, rate = 0, 0.0, -1, 0.0
    for counts in windows:
        if sum(drift.reference) != size:  # a new reference: its rate, given it
            size = sum(drift.reference)
            current = np.asarray(drift.reference, dtype=np.int64)
            rate = float((calibration.ks_distances(current, simulated) >= drift.threshold).mean())
        alarms += drift.update_window(counts.tolist()).fired
        expected += rate
    return StreamRun(n_windows * window, alarms, 0, expected, 0.0, name)


def _chi_square_fires_before(
    reference: Counts, windows: Counts, alpha: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    statistics = calibration.chi_square_statistics(reference, windows)
    columns = ((reference + windows) > 0).sum(axis=-1) - 1
    exceeds = statistics >= chi2.isf(alpha, np.maximum(columns, 1))
    exceeds &= columns > 0
    unseen = (windows[:, reference == 0].sum(axis=-1)) > 0
    return exceeds | unseen, unseen


def acquisition_stream(
    rng: np.random.Generator, release: str, n_windows: int, n_conditional: int
) -> StreamRun:
    """An acquisition dimension of ``release`` in control for ``n_windows`` windows."""
    p = acquisition_mix(rng)
    window = POLICY.score_window
    arl0 = POLICY.arl0_cases * ACQUISITION_DIMENSIONS
    reference = calibration.multinomial_draws(rng, POLICY.score_reference_cases, p, 1)[0]
    windows = calibration.multinomial_draws(rng, window, p, n_windows)
    simulated = calibration.multinomial_draws(rng, window, p, n_conditional)
    label = f"{p.size} categories"
    if release == "before":
        fires, unseen = _chi_square_fires_before(reference, windows, window / arl0)
        sim_fires, sim_unseen = _chi_square_fires_before(reference, simulated, window / arl0)
        return StreamRun(
            n_windows * window,
            int(fires.sum()),
            int(unseen.sum()),
            float(sim_fires.mean()) * n_windows,
            float(sim_unseen.mean()) * n_windows,
            label,
        )
    seen = np.flatnonzero(reference > 0)
    unseen_codes = np.flatnonzero(reference == 0)
    drift = _growing_chi_square(reference)

    def coded(counts: Counts) -> Counts:
        """Counts per detector code: the seen categories, then all unseen ones pooled."""
        return np.concatenate(
            [counts[..., seen], counts[..., unseen_codes].sum(axis=-1, keepdims=True)], axis=-1
        )

    simulated_coded = coded(simulated)
    sim_unseen = simulated_coded[:, -1] > 0
    alarms = unseen_alarms = 0
    expected = expected_unseen = rate = unseen_rate = 0.0
    size = -1
    for counts in coded(windows):
        if sum(drift.reference) != size:
            size = sum(drift.reference)
            pooling = _pooling(drift)
            statistics = calibration.chi_square_statistics(
                _pooled_reference(drift), simulated_coded @ pooling
            )
            rate = float(((statistics >= drift.threshold) | sim_unseen).mean())
            unseen_rate = float(sim_unseen.mean())
        result = drift.update_window(counts.tolist())
        alarms += result.fired
        unseen_alarms += result.fired and result.n_events > 0
        expected += rate
        expected_unseen += unseen_rate
    return StreamRun(n_windows * window, alarms, unseen_alarms, expected, expected_unseen, label)


def _growing_chi_square(reference: Counts) -> WindowedChiSquareDrift:
    """The acquisition test as the pipeline designs it for ``reference`` (counts of the
    mix's categories; those it lacks are unseen), growing to 20 windows."""
    seen = np.flatnonzero(reference > 0)
    return WindowedChiSquareDrift(
        [str(c) for c in seen],
        reference[seen].tolist(),
        POLICY.score_window,
        POLICY.arl0_cases * ACQUISITION_DIMENSIONS,
        fire_on_unseen=True,
        reference_cap=calibration.reference_cap(POLICY.score_window),
    )


def _pooling(drift: WindowedChiSquareDrift) -> Counts:
    """Each detector code's row of 0/1 into its test's columns (``counts @ pooling``)."""
    pooling: Counts = np.eye(max(drift.columns) + 1, dtype=np.int64)[drift.columns]
    return pooling


def _pooled_reference(drift: WindowedChiSquareDrift) -> Counts:
    """The test's reference in use, summed into its columns."""
    reference: Counts = np.asarray([*drift.reference, 0], dtype=np.int64) @ _pooling(drift)
    return reference


def _percentiles(values: Sequence[float]) -> list[float]:
    return [float(v) for v in np.percentile(values, [10, 50, 90])]


def summary(runs: list[StreamRun], nominal: float, unseen: bool = False) -> dict[str, Any]:
    """Fleet (rate-based) and per-stream ARL0, realised and conditional, over ``nominal``.

    With ``unseen``, the chi-square test alone: the windows holding a category unseen in
    the reference (each of which fires by the unseen rule) are left out, alarms and cases.
    """
    window = POLICY.score_window
    drop = 1.0 if unseen else 0.0

    def at_risk(r: StreamRun) -> tuple[float, float, float, float]:
        """(cases, alarms) realised, then (cases, alarms) expected given the references."""
        return (
            r.cases - drop * r.unseen_alarms * window,
            r.alarms - drop * r.unseen_alarms,
            r.cases - drop * r.expected_unseen_alarms * window,
            r.expected_alarms - drop * r.expected_unseen_alarms,
        )

    parts = np.array([at_risk(r) for r in runs])
    cases, alarms, expected_cases, expected = parts.T
    realised = cases / np.maximum(alarms, 1.0)  # censored at the run length
    conditional = expected_cases / np.maximum(expected, 1e-9)
    within = (0.5 * nominal <= conditional) & (conditional <= 2.0 * nominal)
    fleet = cases.sum() / max(alarms.sum(), 1.0)
    return {
        "streams": len(runs),
        "cases": float(cases.sum()),
        "false_alarms": float(alarms.sum()),
        "fleet_arl0": fleet,
        "fleet_arl0_over_nominal": fleet / nominal,
        "fleet_conditional_arl0_over_nominal": expected_cases.sum()
        / max(expected.sum(), 1e-9)
        / nominal,
        "per_stream_arl0_p10_p50_p90_over_nominal": [v / nominal for v in _percentiles(realised)],
        "per_stream_conditional_arl0_p10_p50_p90_over_nominal": [
            v / nominal for v in _percentiles(conditional)
        ],
        "per_stream_arl0_p01_over_nominal": float(np.percentile(realised, 1)) / nominal,
        "per_stream_conditional_arl0_p01_over_nominal": float(np.percentile(conditional, 1))
        / nominal,
        "share_of_streams_within_half_to_twice": float(within.mean()),
        "streams_without_alarm": int((alarms == 0).sum()),
        "unseen_alarms": sum(r.unseen_alarms for r in runs),
        "streams_with_unseen_alarms": sum(r.unseen_alarms > 0 for r in runs),
        "unseen_left_out": unseen,
    }


def score_fleet(streams: int, n_windows: int, release: str, seed: int = 0) -> list[StreamRun]:
    rng = np.random.default_rng(seed)
    names = list(SCORE_DISTRIBUTIONS)
    simulated = {
        name: calibration.multinomial_draws(rng, POLICY.score_window, p, CONDITIONAL_WINDOWS)
        for name, p in SCORE_DISTRIBUTIONS.items()
    }
    return [
        score_stream(rng, names[i % len(names)], release, n_windows, simulated[names[i % 4]])
        for i in range(streams)
    ]


def acquisition_fleet(streams: int, n_windows: int, release: str, seed: int = 1) -> list[StreamRun]:
    rng = np.random.default_rng(seed)
    return [
        acquisition_stream(rng, release, n_windows, CONDITIONAL_WINDOWS) for _ in range(streams)
    ]


def chi_square_carry(streams: int, draws: int, seed: int = 3) -> dict[str, Any]:
    """The rate of the critical value a growing chi-square test carries between its
    calibrations, beside a fresh calibration's for the same reference, each measured by
    ``draws`` independent bootstrap replicates of the test at that reference, as times
    ``alpha``: at every size where the test carried its value and tests two columns or
    more. Streams as :func:`acquisition_stream`'s, in control, grown to 20 windows."""
    rng = np.random.default_rng(seed)
    cap = calibration.reference_cap(POLICY.score_window)
    rates: list[tuple[float, float]] = []
    calibrations = 0
    for _ in range(streams):
        p = acquisition_mix(rng)
        reference = calibration.multinomial_draws(rng, POLICY.score_reference_cases, p, 1)[0]
        drift = _growing_chi_square(reference)
        seen = reference > 0
        q = p[seen] / p[seen].sum()
        while True:
            size = sum(drift.reference)
            threshold = drift.threshold
            made = drift._calibrated  # noqa: SLF001 - the size it was calibrated for
            assert made is not None
            calibrations += made[1] == size
            if size + POLICY.score_window > cap:  # its final size
                break
            if made[1] != size:
                rates += _carried_and_fresh_rates(rng, drift, threshold, draws)
            while sum(drift.reference) == size:  # until a window grows it
                drift.update_window([*rng.multinomial(POLICY.score_window, q).tolist(), 0])
    carried, fresh = ([r[i] for r in rates] for i in (0, 1))
    return {
        "streams": streams,
        "draws": draws,
        "sizes_carried": len(rates),
        "calibrations_per_stream": calibrations / streams,
        "carried_rate_mean_p10_p90_min_max_over_alpha": _spread(carried),
        "fresh_rate_mean_p10_p90_min_max_over_alpha": _spread(fresh),
    }


def _carried_and_fresh_rates(
    rng: np.random.Generator, drift: WindowedChiSquareDrift, carried: float, draws: int
) -> list[tuple[float, float]]:
    """The rates, as times ``alpha``, of the value ``carried`` and of a fresh calibration
    for the test's reference in use, by ``draws`` bootstrap replicates of the test at it
    (none for a test of one column: it has nothing to reject)."""
    live = [int(c) for c in _pooled_reference(drift) if c > 0]
    if len(live) < 2:
        return []
    window, alpha = drift.window, drift.window / drift.arl0
    shares = np.asarray(live) / sum(live)
    statistics = calibration.chi_square_statistics(
        calibration.multinomial_draws(rng, sum(live), shares, draws),
        calibration.multinomial_draws(rng, window, shares, draws),
    )

    def rate(value: float) -> float:
        return float((statistics >= value).mean()) / alpha

    return [(rate(carried), rate(calibration.chi_square_critical_value(live, window, alpha)))]


def _spread(rates: Sequence[float]) -> list[float]:
    if not rates:
        return [float("nan")] * 5
    p10, p90 = np.percentile(rates, [10, 90])
    return [float(np.mean(rates)), float(p10), float(p90), float(min(rates)), float(max(rates))]


def calibration_runtime(repeats: int = 20, seed: int = 2) -> dict[str, float]:
    """Milliseconds to calibrate one critical value (cache cleared): the cost when a stream's
    reference completes or grows, or a stored stream is loaded in a new process."""
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {"ks_ms": [], "chi_square_ms": []}
    for _ in range(repeats):
        p = SCORE_DISTRIBUTIONS["Beta(2, 5)"]
        reference = calibration.multinomial_draws(rng, POLICY.score_reference_cases, p, 1)[0]
        mix = rng.dirichlet(np.full(8, 2.0))
        categories = calibration.multinomial_draws(rng, POLICY.score_reference_cases, mix, 1)[0]
        window = POLICY.score_window
        for key, function, counts, alpha in (
            ("ks_ms", calibration.ks_critical_distance, reference, window / POLICY.arl0_cases),
            (
                "chi_square_ms",
                calibration.chi_square_critical_value,
                categories[categories > 0],
                window / (POLICY.arl0_cases * ACQUISITION_DIMENSIONS),
            ),
        ):
            calibration._bootstrap_critical.cache_clear()
            started = time.perf_counter()
            function(counts.tolist(), window, alpha)
            times[key].append(1e3 * (time.perf_counter() - started))
    return {
        f"{key}_{stat}": float(f(values))
        for key, values in times.items()
        for stat, f in (("median", np.median), ("max", np.max))
    }


def _row(name: str, s: dict[str, Any]) -> str:
    p10, p50, p90 = s["per_stream_arl0_p10_p50_p90_over_nominal"]
    c10, c50, c90 = s["per_stream_conditional_arl0_p10_p50_p90_over_nominal"]
    return (
        f"| {name} | {s['fleet_arl0']:,.0f} | {s['fleet_arl0_over_nominal']:.2f} "
        f"| {s['per_stream_arl0_p01_over_nominal']:.2f} | {p10:.2f} / {p50:.2f} / {p90:.2f} "
        f"| {c10:.2f} / {c50:.2f} / {c90:.2f} "
        f"| {s['share_of_streams_within_half_to_twice']:.0%} | {s['unseen_alarms']} |"
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# In-control ARL of the label-free drift tests (bench_label_free_arl0)",
        "",
        f"{report['score_streams']} score streams x {report['score_windows']} windows, "
        f"{report['acquisition_streams']} acquisition streams x "
        f"{report['acquisition_windows']} windows of 250; reference 500, growing to "
        f"{report['reference_cap']} after arming. ARL0 over nominal (5,000 score, 20,000 "
        "acquisition per dimension); per stream 10th / 50th / 90th percentile, realised "
        "(cases / alarms, censored at the run) and conditional (given the reference).",
        "",
        "| test | fleet ARL0 | fleet / nominal | 1st pct stream | per stream, realised "
        "| per stream, conditional | streams in 0.5x-2x (cond.) | unseen alarms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in report["results"].items():
        lines.append(_row(key, s))
    r = report["calibration_runtime"]
    lines += [
        "",
        f"Calibration of one critical value: KS {r['ks_ms_median']:.1f} ms (max "
        f"{r['ks_ms_max']:.1f}), chi-square on 8 categories {r['chi_square_ms_median']:.1f} ms "
        f"(max {r['chi_square_ms_max']:.1f}). Runtime {report['runtime_s']:.0f} s.",
        "",
    ]
    c = report["chi_square_carry"]
    kept, new = (
        c[f"{which}_rate_mean_p10_p90_min_max_over_alpha"] for which in ("carried", "fresh")
    )
    lines += [
        f"A growing chi-square test's carried critical value, at the {c['sizes_carried']:,} "
        f"sizes where it carried one ({c['streams']} streams, {c['calibrations_per_stream']:.1f} "
        f"calibrations a stream from 2 windows to 20; {c['draws']:,} replicates a rate): "
        f"rate {kept[0]:.2f} x alpha (10th-90th percentile {kept[1]:.2f}-{kept[2]:.2f}, "
        f"range {kept[3]:.2f}-{kept[4]:.2f}); a fresh calibration's {new[0]:.2f} "
        f"({new[1]:.2f}-{new[2]:.2f}, {new[3]:.2f}-{new[4]:.2f}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-streams", type=int, default=400)
    parser.add_argument("--score-windows", type=int, default=800)
    parser.add_argument("--acquisition-streams", type=int, default=300)
    parser.add_argument("--acquisition-windows", type=int, default=2000)
    parser.add_argument("--carry-streams", type=int, default=90)
    parser.add_argument("--carry-draws", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    parser.add_argument("--json", type=Path, default=RESULTS / "label_free_arl0.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.score_streams, args.score_windows = 40, 200
        args.acquisition_streams, args.acquisition_windows = 40, 400
        args.carry_streams, args.carry_draws = 6, 10_000
    started = time.perf_counter()
    score_nominal = POLICY.arl0_cases
    acquisition_nominal = POLICY.arl0_cases * ACQUISITION_DIMENSIONS
    results: dict[str, Any] = {}
    for release in ("before", "after"):
        score = score_fleet(args.score_streams, args.score_windows, release)
        results[f"score, {release}"] = summary(score, score_nominal)
        for name in SCORE_DISTRIBUTIONS:
            runs = [r for r in score if r.distribution == name]
            results[f"score, {release}: {name}"] = summary(runs, score_nominal)
        acquisition = acquisition_fleet(args.acquisition_streams, args.acquisition_windows, release)
        results[f"acquisition, {release}"] = summary(acquisition, acquisition_nominal)
        results[f"acquisition, {release}, chi-square alone"] = summary(
            acquisition, acquisition_nominal, unseen=True
        )
    report = {
        "benchmark": "label_free_arl0",
        "quick": args.quick,
        "score_streams": args.score_streams,
        "score_windows": args.score_windows,
        "acquisition_streams": args.acquisition_streams,
        "acquisition_windows": args.acquisition_windows,
        "reference_cap": calibration.reference_cap(POLICY.score_window),
        "results": results,
        "calibration_runtime": calibration_runtime(),
        "chi_square_carry": chi_square_carry(args.carry_streams, args.carry_draws),
        "runtime_s": time.perf_counter() - started,
        "python": platform.python_version(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    args.json.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return report


if __name__ == "__main__":
    main()
