"""Trend plans and reports (issue 20, part 4; EU MDR Art. 88): a test fixed in advance, its
false-alarm rate held, and a plan that cannot change unseen once the data exist."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import hypergeom
from typer.testing import CliRunner

from evidence.report_outcomes import Proportion
from evidence.store import EvidenceStore
from evidence.trend import PlanError, TrendPlan, deterioration_p_value
from evidence.trend_store import amend_plan, load_plan, record_plan
from launcher.cli import app
from tests.factories import make_outcome

DEVICE = "dr-screen"
BASELINE = "2026-01-01:2026-03-31"
OBSERVATION = "2026-04-01:2026-06-30"


def _plan(**overrides: object) -> TrendPlan:
    fields: dict[str, object] = {
        "name": "sens-2026",
        "device_id": DEVICE,
        "metric": "sensitivity",
        "baseline_start": date(2026, 1, 1),
        "baseline_end": date(2026, 3, 31),
        "observation_start": date(2026, 4, 1),
        "observation_end": date(2026, 6, 30),
    }
    return TrendPlan(**{**fields, **overrides})  # type: ignore[arg-type]


def _positives(start: datetime, n: int, sensitivity: float, seed: int) -> list[object]:
    """``n`` positive cases from ``start``, one every 6 hours, detected at ``sensitivity``."""
    rng = np.random.default_rng(seed)
    return [
        make_outcome(
            "positive" if rng.random() < sensitivity else "negative",
            "positive",
            offset=seed * 10_000 + i,
            event_time=start + timedelta(hours=6 * i),
            case_pseudonym=f"c-{seed}-{i}",
        )
        for i in range(n)
    ]


def _store(url: str, observed_sensitivity: float) -> None:
    with EvidenceStore(url) as store:
        baseline = _positives(datetime(2026, 1, 2, tzinfo=UTC), 300, 0.88, seed=1)
        observed = _positives(datetime(2026, 4, 2, tzinfo=UTC), 300, observed_sensitivity, 2)
        store.record_field_events([*baseline, *observed])  # type: ignore[list-item]


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _record(url: str) -> tuple[int, str]:
    return _cli(
        "plan", "record", "--device", DEVICE, "--name", "sens-2026", "--metric", "sensitivity",
        "--baseline", BASELINE, "--observation", OBSERVATION, "--actor", "qa-lead", "--url", url,
    )  # fmt: skip


def test_the_p_value_is_fisher_s_on_the_published_tea_tasting_table() -> None:
    """Agresti (2002), Table 3.8: 3 of 4 cups right; one-sided P = 0.243."""
    p = deterioration_p_value(Proportion.of(3, 4), Proportion.of(1, 4))
    assert p == pytest.approx(0.2429, abs=1e-4)


@pytest.mark.parametrize(("base", "seen"), [((90, 100), (70, 100)), ((170, 200), (150, 210))])
def test_the_p_value_equals_the_hypergeometric_tail(
    base: tuple[int, int], seen: tuple[int, int]
) -> None:
    """P(at least the observed errors) with both periods' totals fixed."""
    errors_seen, errors_all = seen[1] - seen[0], (base[1] - base[0]) + (seen[1] - seen[0])
    expected = hypergeom.sf(errors_seen - 1, base[1] + seen[1], errors_all, seen[1])
    got = deterioration_p_value(Proportion.of(*base), Proportion.of(*seen))
    assert got == pytest.approx(expected, rel=1e-9)


def test_the_false_alarm_rate_is_at_most_alpha_when_nothing_changed() -> None:
    rng = np.random.default_rng(20)
    trials, alpha = 2000, 0.05
    alarms = sum(
        deterioration_p_value(
            Proportion.of(int(rng.binomial(200, 0.85)), 200),
            Proportion.of(int(rng.binomial(200, 0.85)), 200),
        )
        <= alpha
        for _ in range(trials)
    )
    # Fisher's test is conservative; three standard errors above alpha still fail it.
    assert alarms / trials <= alpha + 3 * (alpha * (1 - alpha) / trials) ** 0.5


@pytest.mark.parametrize(
    ("observed", "exit_code", "verdict"),
    [(0.55, 4, "significant deterioration"), (0.88, 0, "no significant deterioration")],
)
def test_the_trend_report_judges_the_observation_against_the_baseline(
    tmp_path: Path, observed: float, exit_code: int, verdict: str
) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    _store(url, observed)
    assert _record(url)[0] == 0
    code, output = _cli("plan", "trend", "--device", DEVICE, "--name", "sens-2026",
                        "--json", "--url", url)  # fmt: skip
    assert code == exit_code, output
    result = json.loads(output)
    assert result["verdict"] == verdict
    assert result["baseline"]["n"] == 300 and result["observation"]["n"] == 300
    assert "false-alarm rate at most 0.05" in result["method"]


def test_too_few_cases_give_no_conclusion(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    _store(url, 0.55)
    with EvidenceStore(url) as store:
        record_plan(store, _plan(name="big", min_cases=1000), "qa-lead")
    code, output = _cli("plan", "trend", "--device", DEVICE, "--name", "big", "--url", url)
    assert code == 0 and "insufficient data" in output


def test_a_plan_is_recorded_once_and_changed_only_by_an_amendment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    assert _record(url)[0] == 0
    code, output = _record(url)
    assert code != 0 and "amend" in output
    with EvidenceStore(url) as store:
        with pytest.raises(PlanError, match="reason"):
            amend_plan(store, _plan(alpha=0.01), "qa-lead", " ")
        with pytest.raises(PlanError, match="nothing to amend"):
            amend_plan(store, _plan(), "qa-lead", "no change")
        late = datetime(2026, 5, 1, tzinfo=UTC)
        amend_plan(store, _plan(alpha=0.2, observation_start=date(2026, 6, 1)), "cro", "x", late)
        plan, amendments = load_plan(store, DEVICE, "sens-2026")
        assert store.verify_audit_chain().intact
    assert plan.alpha == 0.2
    # Judged against the plan fixed before: its observation period began on 1 April.
    assert [(a.by, a.after_data) for a in amendments] == [("cro", True)]
    code, output = _cli("plan", "trend", "--device", DEVICE, "--name", "sens-2026", "--url", url)
    assert "AFTER DATA WERE SEEN" in output


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"baseline_end": date(2026, 4, 15)}, "must end before"),
        ({"alpha": 0.0}, "false-alarm rate"),
        ({"metric": "accuracy"}, "metric"),
        ({"name": "Bad Name"}, "plan name"),
    ],
)
def test_a_plan_that_cannot_be_tested_is_refused(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(PlanError, match=reason):
        _plan(**overrides)


def test_a_malformed_period_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    code, output = _cli(
        "plan", "record", "--device", DEVICE, "--name", "p", "--metric", "sensitivity",
        "--baseline", "2026-01-01", "--observation", OBSERVATION, "--url", url,
    )  # fmt: skip
    assert code != 0 and "FIRST:LAST" in output and "Traceback" not in output
