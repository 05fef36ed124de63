"""Detection delay of the GLR Bernoulli CUSUM against oracle CUSUMs and ADWIN (not a test).

Issue 16, item 2 ("unknown shift size"). In control is the IDx-DR-like claim, sensitivity
0.872 (95 % CI 0.818-0.914); every chart watches the miss rate among referable cases. Under
the default policy the acceptable level is the CI's lower bound, p0 = 1 - 0.818 = 0.182;
under the point-estimate policy p0 = 1 - 0.872 = 0.128. Every chart runs at ARL0 = 5,000
referable cases at p0. The true sensitivity falls from the acceptable level to one of
0.80, 0.77, 0.74, 0.70, 0.60 after ``--change-at`` cases; delay = cases after the change up
to and including the alarm, for runs without an alarm before it (conditional delay).

Monitors:

* ``BernoulliGLRCUSUM.for_sensitivity`` (four alternatives, 0.80 ... 0.60), thresholds by
  simulation (:func:`detectors.glr_design`), its ARL0 checked on independent streams;
* the oracle: ``BernoulliCUSUM.for_arl0(p0, 1 - true sensitivity)``, the chart designed
  for exactly the true drop (exact Markov-chain threshold, ARL0 the smallest lattice value
  >= 5,000), a different chart for every column;
* river's ADWIN matched as in bench_detection_delay.py (``clock=1``, upward alarms only,
  restarted after an alarm), its delta tuned by bisection on a long in-control stream so
  that its ARL0 is 5,000 at p0 (that benchmark's ``tune_monotone``, ``renewal_arl0`` and
  ``RiverMonitor``), then checked on a fresh stream.

The GLR and the oracle run on the same simulated streams (common random numbers,
:func:`detectors.bernoulli_glr_cusum.cusum_family_run_lengths`, vectorised), so their
ratio is paired: its SE (delta method) uses the runs on which neither alarmed early.
ADWIN runs on its own streams (independent SE). Goal: GLR delay <= 1.2 x the oracle's at
every drop.

Budget scale (the chart the pipeline runs): under the default surveillance plan
(:func:`streams.monitor_policy.planned_policy` of the default settings: 10 false alarms a year
among 100 streams of 10,000 predictions, follow-up 0.8, prevalence 0.25) a sensitivity
chart's ARL0 is 180,000 referable cases. There the stream's chart is
:func:`streams.detector_design.labelled_chart` (three CUSUMs, each designed by exact ARL at
three times the ARL0: the Bonferroni design of :mod:`detectors.bernoulli_multi_cusum`), and
it is compared on common streams with the oracle CUSUM for each drop and with the single
CUSUM the pipeline ran before (tuned to the rejectable level, acceptable less 0.07), all at
the same ARL0 (the oracles' and the fixed chart's exact; the GLR's a lower bound, so the
comparison favours its peers). Written to glr_delay_budget.json and .md.

Runtime: about 3 minutes on 2 cores with the defaults (``--replications 2000``), plus about
2 for the budget scale; ``--quick`` is a smoke check (seconds); ``--budget-scale-only``
runs the second part alone. Writes bench/results/glr_delay.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from typing import Any

import bench_detection_delay as delay_bench
import numpy as np

from detectors import BernoulliCUSUM, BernoulliGLRCUSUM, BernoulliMultiCUSUM, glr_arl
from detectors.bernoulli_glr_cusum import cusum_family_run_lengths
from postmarket.config import Settings
from streams.detector_design import labelled_chart
from streams.monitor_policy import planned_policy

RESULTS = delay_bench.RESULTS
CLAIMED = 0.872
POLICIES = {"acceptable level (CI lower bound)": 0.818, "point estimate": CLAIMED}
TRUE_SENSITIVITIES = (0.80, 0.77, 0.74, 0.70, 0.60)
ARL0 = 5_000.0
GOAL = 1.2

assert delay_bench.ARL0 == ARL0  # its tune_monotone aims at its module's ARL0


def _conditional(run_lengths: np.ndarray, change_at: int) -> np.ndarray:
    """Delays of the runs without an alarm up to the change, NaN for the others."""
    delays = (run_lengths - change_at).astype(np.float64)
    delays[run_lengths <= change_at] = np.nan
    return delays


def _summary(delays: np.ndarray) -> dict[str, Any]:
    kept = delays[~np.isnan(delays)]
    return {
        "mean": float(kept.mean()),
        "se": float(kept.std(ddof=1) / math.sqrt(kept.size)),
        "median": float(np.median(kept)),
        "runs": int(kept.size),
        "false_alarms_before_change": int(np.isnan(delays).sum()),
    }


def paired_ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Ratio of mean delays on the runs where neither alarmed early, and its delta-method SE."""
    both = ~(np.isnan(a) | np.isnan(b))
    x, y = a[both], b[both]
    ratio = x.mean() / y.mean()
    covariance = np.cov(x, y, ddof=1)
    variance = (
        covariance[0, 0] / x.mean() ** 2
        + covariance[1, 1] / y.mean() ** 2
        - 2 * covariance[0, 1] / (x.mean() * y.mean())
    ) / x.size
    return float(ratio), float(ratio * math.sqrt(max(variance, 0.0)))


def independent_ratio(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    ratio = a["mean"] / b["mean"]
    return ratio, ratio * math.hypot(a["se"] / a["mean"], b["se"] / b["mean"])


def adwin_delays(
    delta: float, p0: float, p: float, change_at: int, replications: int, seed: int
) -> np.ndarray:
    """Conditional delays of the matched ADWIN (NaN for runs with an alarm before the change)."""
    from river import drift

    rng = np.random.default_rng(seed)
    delays = np.full(replications, np.nan)
    cap = 40 * int(ARL0)
    for r in range(replications):
        monitor = delay_bench.RiverMonitor(lambda: drift.ADWIN(delta=delta, clock=1), True)
        before = (rng.random(change_at) < p0).tolist()
        if any(monitor.step(x) for x in before):
            continue
        after = (rng.random(cap) < p).tolist()
        delays[r] = next((i for i, x in enumerate(after, start=1) if monitor.step(x)), cap)
    return delays


def tune_adwin(p0: float, tuning_cases: int, steps: int, seed: int) -> dict[str, Any]:
    from river import drift

    rng = np.random.default_rng(seed)
    tuning = (rng.random(tuning_cases) < p0).astype(int)
    check = (rng.random(tuning_cases) < p0).astype(int)

    def make(delta: float) -> delay_bench.RiverMonitor:
        return delay_bench.RiverMonitor(lambda: drift.ADWIN(delta=delta, clock=1), True)

    inverse = delay_bench.tune_monotone(
        lambda d: delay_bench.renewal_arl0(lambda: make(1 / d), tuning)[0], 0.5, 100.0, steps
    )
    value, alarms = delay_bench.renewal_arl0(lambda: make(1 / inverse), check)
    return {
        "delta": 1 / inverse,
        "arl0_check": value,
        "arl0_check_se": value / math.sqrt(max(alarms, 1)),
        "alarms": alarms,
    }


def run_policy(name: str, acceptable: float, args: argparse.Namespace) -> dict[str, Any]:
    p0 = 1.0 - acceptable
    started = time.perf_counter()
    glr = BernoulliGLRCUSUM.for_sensitivity(acceptable, ARL0, seed=args.seed)
    design_seconds = time.perf_counter() - started
    arl0_check, arl0_se = glr_arl(p0, p0, glr.p1, glr.h, n_streams=args.arl0_streams, seed=99)
    up = [math.log(q / p0) for q in glr.p1]
    down = [math.log((1 - q) / (1 - p0)) for q in glr.p1]
    adwin = tune_adwin(p0, args.tuning_cases, args.tuning_steps, args.seed + 1)
    rows = []
    for k, sensitivity in enumerate(TRUE_SENSITIVITIES):
        p = 1.0 - sensitivity
        stream_seed = args.seed + 100 + k
        glr_runs = cusum_family_run_lengths(
            up,
            down,
            glr.h,
            p,
            n_streams=args.replications,
            seed=stream_seed,
            p_before=p0,
            change_at=args.change_at,
        )
        oracle = BernoulliCUSUM.for_arl0(p0, p, ARL0)
        a, m = oracle.gamma.numerator, oracle.gamma.denominator
        oracle_runs = cusum_family_run_lengths(
            [m - a],
            [-a],
            [math.ceil(oracle.h * m - 1e-9)],  # the chart's lattice threshold
            p,
            n_streams=args.replications,
            seed=stream_seed,
            p_before=p0,
            change_at=args.change_at,
        )
        glr_delay = _conditional(glr_runs, args.change_at)
        oracle_delay = _conditional(oracle_runs, args.change_at)
        adwin_delay = adwin_delays(
            adwin["delta"], p0, p, args.change_at, args.adwin_replications, stream_seed + 50
        )
        glr_summary, oracle_summary = _summary(glr_delay), _summary(oracle_delay)
        adwin_summary = _summary(adwin_delay)
        over_oracle, over_oracle_se = paired_ratio(glr_delay, oracle_delay)
        over_adwin, over_adwin_se = independent_ratio(glr_summary, adwin_summary)
        rows.append(
            {
                "true_sensitivity": sensitivity,
                "p": p,
                "glr": glr_summary,
                "oracle": {**oracle_summary, "h": oracle.h, "exact_arl0": oracle.arl0},
                "adwin": adwin_summary,
                "glr_over_oracle": over_oracle,
                "glr_over_oracle_se": over_oracle_se,
                "glr_over_adwin": over_adwin,
                "glr_over_adwin_se": over_adwin_se,
                "within_goal": over_oracle <= GOAL,
            }
        )
        print(
            f"{name}: {acceptable} -> {sensitivity:.2f}: GLR {glr_summary['mean']:.1f}, "
            f"oracle {oracle_summary['mean']:.1f}, ADWIN {adwin_summary['mean']:.1f}; "
            f"GLR/oracle {over_oracle:.3f} ± {over_oracle_se:.3f}",
            flush=True,
        )
    return {
        "policy": name,
        "acceptable_sensitivity": acceptable,
        "p0": p0,
        "glr": {
            "p1": list(glr.p1),
            "h": list(glr.h),
            "design_seconds": design_seconds,
            "arl0_independent_check": arl0_check,
            "arl0_independent_check_se": arl0_se,
        },
        "adwin": adwin,
        "rows": rows,
    }


def _single_runs(
    chart: BernoulliCUSUM, p: float, p0: float, args: argparse.Namespace, seed: int
) -> np.ndarray:
    a, m = chart.gamma.numerator, chart.gamma.denominator
    return cusum_family_run_lengths(
        [m - a],
        [-a],
        [math.ceil(chart.h * m - 1e-9)],  # the chart's lattice threshold
        p,
        n_streams=args.replications,
        seed=seed,
        p_before=p0,
        change_at=args.change_at,
    )


def budget_arl0() -> float:
    """The sensitivity charts' ARL0 under the default surveillance plan, in referable cases."""
    return planned_policy(Settings()).test_arl0("positives")


def run_budget_policy(name: str, acceptable: float, args: argparse.Namespace) -> dict[str, Any]:
    """The stream's chart at the plan's ARL0 against the oracles and the former fixed chart."""
    p0, arl0 = 1.0 - acceptable, budget_arl0()
    started = time.perf_counter()
    chart: BernoulliMultiCUSUM = labelled_chart(acceptable, round(acceptable - 0.07, 10), arl0)
    design_seconds = time.perf_counter() - started
    fixed = BernoulliCUSUM.for_arl0(p0, 1.0 - (acceptable - 0.07), arl0)
    up = [m - a for a, m in zip(chart._a, chart._m, strict=True)]
    down = [-a for a in chart._a]
    rows = []
    for k, sensitivity in enumerate(TRUE_SENSITIVITIES):
        p, seed = 1.0 - sensitivity, args.seed + 200 + k
        glr_runs = cusum_family_run_lengths(
            up,
            down,
            list(chart._threshold),
            p,
            n_streams=args.replications,
            seed=seed,
            p_before=p0,
            change_at=args.change_at,
        )
        oracle = BernoulliCUSUM.for_arl0(p0, p, arl0)
        glr_delay = _conditional(glr_runs, args.change_at)
        oracle_delay = _conditional(_single_runs(oracle, p, p0, args, seed), args.change_at)
        fixed_delay = _conditional(_single_runs(fixed, p, p0, args, seed), args.change_at)
        over_oracle, over_oracle_se = paired_ratio(glr_delay, oracle_delay)
        over_fixed, over_fixed_se = paired_ratio(glr_delay, fixed_delay)
        rows.append(
            {
                "true_sensitivity": sensitivity,
                "p": p,
                "glr": _summary(glr_delay),
                "oracle": {**_summary(oracle_delay), "exact_arl0": oracle.arl0},
                "fixed": _summary(fixed_delay),
                "glr_over_oracle": over_oracle,
                "glr_over_oracle_se": over_oracle_se,
                "glr_over_fixed": over_fixed,
                "glr_over_fixed_se": over_fixed_se,
                "within_goal": over_oracle <= GOAL,
            }
        )
        print(
            f"budget {name}: {acceptable} -> {sensitivity:.2f}: GLR/oracle {over_oracle:.3f} ± "
            f"{over_oracle_se:.3f}, GLR/fixed {over_fixed:.3f} ± {over_fixed_se:.3f}",
            flush=True,
        )
    return {
        "policy": name,
        "acceptable_sensitivity": acceptable,
        "p0": p0,
        "arl0": arl0,
        "glr": {
            "p1": list(chart.p1),
            "h": list(chart.h),
            "resolution": chart.resolution,
            "component_arl0": list(chart.component_arl0),
            "arl0_bound": chart.arl0,
            "design_seconds": design_seconds,
        },
        "fixed": {"p1": fixed.p1, "h": fixed.h, "exact_arl0": fixed.arl0},
        "rows": rows,
    }


def budget_markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"The stream's chart (multi-chart CUSUM, Bonferroni design by exact ARL) at the default "
        f"plan's ARL0 {payload['arl0']:,.0f} referable cases, against the oracle CUSUM for each "
        f"drop and the fixed CUSUM the pipeline ran before (tuned to acceptable - 0.07), same "
        f"ARL0; change after {payload['arguments']['change_at']} cases; conditional delay in "
        f"referable cases, mean ± SE, {payload['arguments']['replications']} runs on common "
        f"streams; ratios paired.",
    ]
    for policy in payload["policies"]:
        glr = policy["glr"]
        lines += [
            "",
            f"**{policy['policy']}**: acceptable sensitivity {policy['acceptable_sensitivity']}; "
            f"alternatives {glr['p1']}, thresholds {[round(h, 2) for h in glr['h']]} excess "
            f"events, each CUSUM's exact ARL0 {[round(a) for a in glr['component_arl0']]}, "
            f"Bonferroni bound {glr['arl0_bound']:,.0f} (design {glr['design_seconds']:.2f} s); "
            f"fixed CUSUM p1 {policy['fixed']['p1']:.3f}, exact ARL0 "
            f"{policy['fixed']['exact_arl0']:,.0f}.",
            "",
            "| true sensitivity | GLR | oracle CUSUM | fixed CUSUM | GLR / oracle | GLR / fixed "
            "| <= 1.2 x oracle |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in policy["rows"]:
            g, o, f = row["glr"], row["oracle"], row["fixed"]
            lines.append(
                f"| {row['true_sensitivity']:.2f} | {g['mean']:.1f} ± {g['se']:.1f} | "
                f"{o['mean']:.1f} ± {o['se']:.1f} | {f['mean']:.1f} ± {f['se']:.1f} | "
                f"{row['glr_over_oracle']:.3f} ± {row['glr_over_oracle_se']:.3f} | "
                f"{row['glr_over_fixed']:.3f} ± {row['glr_over_fixed_se']:.3f} | "
                f"{'yes' if row['within_goal'] else 'no'} |"
            )
    lines.append(f"\nTotal {payload['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def run_budget_scale(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    policies = [run_budget_policy(name, level, args) for name, level in POLICIES.items()]
    payload = {
        "python": platform.python_version(),
        "arguments": vars(args),
        "arl0": budget_arl0(),
        "goal_glr_over_oracle": GOAL,
        "policies": policies,
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "glr_delay_budget.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = budget_markdown(payload)
    (RESULTS / "glr_delay_budget.md").write_text(table)
    print(table)


def markdown(payload: dict[str, Any]) -> str:
    args = payload["arguments"]
    lines = [
        f"GLR Bernoulli CUSUM against the oracle CUSUM for each drop and the matched ADWIN, "
        f"ARL0 {ARL0:,.0f} referable cases at p0; change after {args['change_at']} cases at "
        f"the acceptable level; conditional delay in referable cases, mean ± Monte Carlo SE "
        f"({args['replications']} GLR/oracle runs on common streams, "
        f"{args['adwin_replications']} ADWIN runs).",
    ]
    for policy in payload["policies"]:
        glr, adwin = policy["glr"], policy["adwin"]
        lines += [
            "",
            f"**{policy['policy']}**: acceptable sensitivity {policy['acceptable_sensitivity']}, "
            f"p0 = {policy['p0']:.3f}. GLR alternatives {glr['p1']}, thresholds "
            f"{[round(h, 3) for h in glr['h']]} nats (design {glr['design_seconds']:.1f} s); "
            f"ARL0 on independent streams {glr['arl0_independent_check']:,.0f} ± "
            f"{glr['arl0_independent_check_se']:,.0f}. ADWIN delta {adwin['delta']:.3f}, ARL0 "
            f"check {adwin['arl0_check']:,.0f} ± {adwin['arl0_check_se']:,.0f}.",
            "",
            "| true sensitivity | GLR | oracle CUSUM | ADWIN | GLR / oracle | GLR / ADWIN "
            "| early alarms (GLR, oracle, ADWIN) | <= 1.2 x oracle |",
            "|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in policy["rows"]:
            g, o, a = row["glr"], row["oracle"], row["adwin"]
            lines.append(
                f"| {row['true_sensitivity']:.2f} | {g['mean']:.1f} ± {g['se']:.1f} | "
                f"{o['mean']:.1f} ± {o['se']:.1f} | {a['mean']:.1f} ± {a['se']:.1f} | "
                f"{row['glr_over_oracle']:.3f} ± {row['glr_over_oracle_se']:.3f} | "
                f"{row['glr_over_adwin']:.3f} ± {row['glr_over_adwin_se']:.3f} | "
                f"{g['false_alarms_before_change']}, {o['false_alarms_before_change']}, "
                f"{a['false_alarms_before_change']} | {'yes' if row['within_goal'] else 'no'} |"
            )
    lines.append(f"\nTotal {payload['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replications", type=int, default=2000)
    parser.add_argument("--adwin-replications", type=int, default=None)
    parser.add_argument("--change-at", type=int, default=500, help="referable cases")
    parser.add_argument("--tuning-cases", type=int, default=2_000_000)
    parser.add_argument("--tuning-steps", type=int, default=12)
    parser.add_argument("--arl0-streams", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=20240616)
    parser.add_argument("--quick", action="store_true", help="smoke check: few runs")
    parser.add_argument("--budget-scale-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.replications, args.tuning_cases, args.tuning_steps = 200, 200_000, 5
        args.arl0_streams = 500
    if args.adwin_replications is None:
        args.adwin_replications = args.replications
    if args.budget_scale_only:
        run_budget_scale(args)
        return
    started = time.perf_counter()
    policies = [run_policy(name, level, args) for name, level in POLICIES.items()]
    payload = {
        "python": platform.python_version(),
        "arguments": vars(args),
        "arl0": ARL0,
        "goal_glr_over_oracle": GOAL,
        "policies": policies,
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "glr_delay.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown(payload)
    (RESULTS / "glr_delay.md").write_text(table)
    print(table)
    print(f"wrote {RESULTS / 'glr_delay.json'}, .md")
    run_budget_scale(args)


if __name__ == "__main__":
    main()
