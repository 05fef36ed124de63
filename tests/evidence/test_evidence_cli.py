"""``postmarket registry | alerts | audit`` through typer's CliRunner, on a SQLite store."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from evidence_builders import T0, make_alert, make_stream
from typer.testing import CliRunner

from evidence.store import EvidenceStore
from launcher.cli import app

runner = CliRunner()


def invoke(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--url", url])
    return result.exit_code, result.output


def seed_registry(url: str) -> None:
    commands = [
        ["registry", "add-device", "dr-screen", "--task", "referable_dr", "--name", "DR Screen"],
        ["registry", "add-version", "dr-screen", "2.1.0.3", "--regulator", "NMPA",
         "--reference", "NMPA-2020-3-001", "--registered-on", "2020-08-01"],
        ["registry", "add-claim", "dr-screen", "2.1.0.3", "referable_dr", "--metric",
         "sensitivity", "--value", "0.872", "--ci-lower", "0.818", "--ci-upper", "0.915",
         "--test-database", "NIFDC fundus 2018", "--acquisition", "Topcon NW400"],
        ["registry", "add-version", "dr-screen", "2.2.0.0", "--status", "pending"],
        ["registry", "add-change", "dr-screen", "2.2.0.0", "--kind", "training_database",
         "--fraction", "0.15", "--description", "3,000 new cases"],
    ]  # fmt: skip
    for command in commands:
        code, output = invoke(url, *command, "--actor", "qa-lead")
        assert code == 0, output


@pytest.fixture
def seeded_url(sqlite_url: str) -> str:
    seed_registry(sqlite_url)
    return sqlite_url


def test_registry_list_shows_claims_and_verdicts(seeded_url: str) -> None:
    code, output = invoke(seeded_url, "registry", "list")
    assert code == 0
    assert "referable_dr sensitivity 0.872 [0.818, 0.915]" in output
    assert "2.2.0.0        pending      change: training_database" in output
    assert "NEEDS REGISTRATION under nmpa-syzb: Y (minor enhancement) changed" in output


def test_registry_list_under_pccp_lets_a_planned_retraining_run(seeded_url: str) -> None:
    code, output = invoke(seeded_url, "registry", "list", "--policy", "fda-pccp")
    assert code == 0
    assert "may run under fda-pccp" in output


def test_malformed_version_exits_1_with_the_reason(seeded_url: str) -> None:
    code, output = invoke(seeded_url, "registry", "add-version", "dr-screen", "2.2")
    assert code == 1
    assert "'2.2' is not a version S.Y.Z.B: it has 2 parts, not 4" in output


def test_claim_outside_its_ci_is_refused(seeded_url: str) -> None:
    code, output = invoke(
        seeded_url, "registry", "add-claim", "dr-screen", "2.1.0.3", "referable_dr",
        "--metric", "specificity", "--value", "0.95", "--ci-lower", "0.80",
        "--ci-upper", "0.90", "--test-database", "NIFDC",
    )  # fmt: skip
    assert code == 1
    assert "claim value must lie within [ci_lower, ci_upper]" in output


def test_a_claim_of_100_percent_with_its_ci_is_registered(seeded_url: str) -> None:
    # A small pivotal study with every referable case found: charted at its lower bound.
    code, output = invoke(
        seeded_url, "registry", "add-claim", "dr-screen", "2.1.0.3", "referable_dr",
        "--metric", "specificity", "--value", "1.0", "--ci-lower", "0.94",
        "--ci-upper", "1.0", "--test-database", "NIFDC",
    )  # fmt: skip
    assert code == 0, output


@pytest.mark.parametrize(
    ("value", "ci_lower", "why"),
    [
        ("0.999999", "0.9999", "above 0.995: fewer than 1 in 200 cases could be an error"),
        ("1.0", "1.0", "above 0.995"),
        ("0.01", "0.0", "below 0.02: no lower level is left to detect"),
    ],
)
def test_a_claim_no_chart_can_monitor_is_refused_with_the_reason(
    seeded_url: str, value: str, ci_lower: str, why: str
) -> None:
    code, output = invoke(
        seeded_url, "registry", "add-claim", "dr-screen", "2.1.0.3", "referable_dr",
        "--metric", "specificity", "--value", value, "--ci-lower", ci_lower,
        "--ci-upper", "1.0", "--test-database", "NIFDC",
    )  # fmt: skip
    assert code == 1
    assert "claim refused, no chart could monitor it: specificity acceptable level" in output
    assert why in output
    assert "Traceback" not in output
    with EvidenceStore(seeded_url) as store:
        [version] = [v for v in store.device("dr-screen").versions if str(v.version) == "2.1.0.3"]
        assert [c.metric for c in version.claims] == ["sensitivity"]


def test_change_of_unknown_kind_lists_the_kinds(seeded_url: str) -> None:
    code, output = invoke(
        seeded_url, "registry", "add-change", "dr-screen", "2.2.0.0", "--kind", "magic"
    )
    assert code == 1
    assert "use algorithm_framework, training_database, bug_fix" in output


def test_alert_lifecycle_through_the_cli(seeded_url: str) -> None:
    # Not claim-based: resolving it publishes nothing (test_review_cli.py has the others).
    alert = make_alert(stream=make_stream(), detector="unregistered_change")
    with EvidenceStore(seeded_url) as store:
        store.record_alert(alert, actor="worker")
    alert_id = str(alert.alert_id)
    assert (
        invoke(seeded_url, "alerts", "ack", alert_id, "--note", "checking", "--by", "dr.li")[0] == 0
    )
    code, output = invoke(
        seeded_url, "alerts", "resolve", alert_id, "--resolution", "camera fixed", "--by", "dr.li"
    )
    assert (code, output.strip()) == (0, f"alert {alert_id} is resolved")
    code, output = invoke(seeded_url, "alerts", "show", alert_id)
    assert "status       resolved" in output
    assert "by dr.li: camera fixed" in output


def test_alerts_list_filters_by_status(seeded_url: str) -> None:
    alert = make_alert()
    with EvidenceStore(seeded_url) as store:
        store.record_alert(alert, actor="worker")
    assert str(alert.alert_id)[:8] in invoke(seeded_url, "alerts", "list", "--status", "open")[1]
    assert invoke(seeded_url, "alerts", "list", "--status", "resolved")[1].strip() == "no alerts"


def test_resolving_an_open_alert_exits_1_saying_why(seeded_url: str) -> None:
    alert = make_alert()
    with EvidenceStore(seeded_url) as store:
        store.record_alert(alert, actor="worker")
    code, output = invoke(
        seeded_url, "alerts", "resolve", str(alert.alert_id), "--resolution", "done"
    )
    assert code == 1
    assert "still open: acknowledge it first" in output


def test_audit_verify_passes_on_an_untouched_trail(seeded_url: str) -> None:
    code, output = invoke(seeded_url, "audit", "verify")
    assert code == 0
    assert "audit trail intact: 5 entries" in output


def test_audit_verify_fails_naming_a_tampered_entry(seeded_url: str) -> None:
    database = Path(seeded_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER audit_entries_no_update")
        connection.execute(
            "UPDATE audit_entries SET payload = replace(payload, '0.872', '0.972') "
            "WHERE sequence = 3"
        )
    connection.close()
    code, output = invoke(seeded_url, "audit", "verify")
    assert code == 1
    assert "audit trail broken at audit entry 3: content does not match its hash" in output


def test_regulator_role_needs_postgresql(seeded_url: str) -> None:
    code, output = invoke(seeded_url, "evidence", "regulator-role")
    assert code == 1
    assert "read-only roles need PostgreSQL" in output


@pytest.mark.parametrize("group", ["registry", "alerts", "audit", "evidence"])
def test_every_group_has_readable_help(group: str) -> None:
    result = runner.invoke(app, [group, "--help"])
    assert result.exit_code == 0
    assert "Usage: postmarket" in result.output


def test_alerts_show_lists_the_recurrences(seeded_url: str) -> None:
    first = make_alert()
    recurrence = make_alert(
        severity="critical",
        statistic=6.25,
        threshold=4.5,
        first_case_time=T0 + timedelta(days=8),
        last_case_time=T0 + timedelta(days=12),
        raised_at=T0 + timedelta(days=12, hours=1),
    )
    with EvidenceStore(seeded_url) as store:
        store.record_alert(first, actor="worker")
        store.record_alert(recurrence, actor="worker")
    code, output = invoke(seeded_url, "alerts", "show", str(first.alert_id))
    assert code == 0, output
    assert "recurrences  1, highest severity critical" in output
    assert (
        "  2026-03-13T10:30:00+00:00  critical statistic 6.25, threshold 4.5, cases "
        f"2026-03-09T09:30:00+00:00 .. 2026-03-13T09:30:00+00:00  ({recurrence.alert_id})"
    ) in output


def test_alerts_show_of_an_alert_that_never_recurred_has_no_recurrences(seeded_url: str) -> None:
    alert = make_alert()
    with EvidenceStore(seeded_url) as store:
        store.record_alert(alert, actor="worker")
    assert "recurrences" not in invoke(seeded_url, "alerts", "show", str(alert.alert_id))[1]


def test_alerts_list_shows_how_often_each_alert_recurred(seeded_url: str) -> None:
    first = make_alert(severity="warning")
    with EvidenceStore(seeded_url) as store:
        store.record_alert(first, actor="worker")
        for days in (9, 14):
            store.record_alert(make_alert(raised_at=T0 + timedelta(days=days)), actor="worker")
    code, output = invoke(seeded_url, "alerts", "list")
    assert code == 0, output
    (_header, line) = output.splitlines()
    assert line.startswith(str(first.alert_id)[:8])
    assert line.endswith("recurred 2x, last 2026-03-15 09:30, up to warning")


def test_alerts_show_of_a_recurrence_names_its_alert(seeded_url: str) -> None:
    first, recurrence = make_alert(), make_alert()
    with EvidenceStore(seeded_url) as store:
        store.record_alert(first, actor="worker")
        store.record_alert(recurrence, actor="worker")
    code, output = invoke(seeded_url, "alerts", "show", str(recurrence.alert_id))
    assert code == 1
    assert f"is a recurrence of alert {first.alert_id}" in output


@pytest.mark.parametrize("command", [["registry", "list"], ["alerts", "list"], ["audit", "verify"]])
def test_a_store_that_cannot_be_opened_is_one_clear_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A newcomer in an empty directory: the default store's directory does not exist.
    monkeypatch.setenv("POSTMARKET_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("POSTMARKET_EVIDENCE_URL", raising=False)
    result = runner.invoke(app, command)
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: no evidence store at {tmp_path / 'nowhere' / 'evidence.db'}")
    assert not (tmp_path / "nowhere").exists()


def test_a_store_url_never_shows_its_password() -> None:
    url = "postgresql://auditor:s3cret-pw@127.0.0.1:1/evidence"
    code, output = invoke(url, "alerts", "list")
    assert code == 3
    assert "s3cret-pw" not in output and "auditor:***@127.0.0.1:1" in output
