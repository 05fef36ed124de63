"""``postmarket registry set-status | add-task | amend-claim | withdraw-claim`` on SQLite:
each refuses in one line with exit 1 what change control forbids, never a traceback."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from evidence.store import EvidenceStore
from launcher.cli import app

runner = CliRunner()
CLAIM = ("dr-screen", "2.1.0.3", "referable_dr", "--metric", "sensitivity")


def invoke(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--url", url])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def url(sqlite_url: str) -> str:
    commands = [
        ["registry", "add-device", "dr-screen", "--task", "referable_dr"],
        ["registry", "add-version", "dr-screen", "2.1.0.3", "--reference", "NMPA-2020-3-001"],
        ["registry", "add-claim", *CLAIM, "--value", "0.872", "--ci-lower", "0.818",
         "--ci-upper", "0.915", "--test-database", "NIFDC fundus 2018"],
        ["registry", "add-version", "dr-screen", "2.2.0.0", "--status", "pending"],
    ]  # fmt: skip
    for command in commands:
        code, output = invoke(sqlite_url, *command)
        assert code == 0, output
    return sqlite_url


def last_audit(url: str) -> tuple[str, str, dict[str, object]]:
    with EvidenceStore(url) as store:
        entry = store.audit_entries()[-1]
    return entry.action, entry.actor, json.loads(entry.payload)


def test_set_status_registers_a_pending_version(url: str) -> None:
    code, output = invoke(
        url, "registry", "set-status", "dr-screen", "2.2.0.0", "registered",
        "--reference", "NMPA-2024-417", "--registered-on", "2024-05-20",
        "--why", "approved", "--actor", "ra-lead",
    )  # fmt: skip
    assert (code, output.strip()) == (0, "dr-screen 2.2.0.0: pending -> registered")
    action, actor, payload = last_audit(url)
    assert (action, actor, payload["why"]) == (
        "registry.set_registration_status",
        "ra-lead",
        "approved",
    )


def test_set_status_refuses_to_unregister_a_registered_version_in_one_line(url: str) -> None:
    code, output = invoke(
        url, "registry", "set-status", "dr-screen", "2.1.0.3", "pending", "--why", "oops"
    )
    assert code == 1
    assert output.strip().splitlines() == [
        "error: dr-screen 2.1.0.3: cannot change registered -> pending: a registration is "
        "never undone: withdraw it"
    ]


def test_set_status_without_why_is_a_usage_error(url: str) -> None:
    code, output = invoke(url, "registry", "set-status", "dr-screen", "2.2.0.0", "unregistered")
    assert code == 2
    assert "--why" in output


def test_a_blank_why_is_refused(url: str) -> None:
    code, output = invoke(url, "registry", "add-task", "dr-screen", "dme", "--why", "  ")
    assert code == 1
    assert output.startswith("error: --why is empty")


def test_add_task_adds_a_task_that_claims_can_name(url: str) -> None:
    code, output = invoke(url, "registry", "add-task", "dr-screen", "dme", "--why", "approved")
    assert (code, output.strip()) == (0, "added task dme to dr-screen")
    code, output = invoke(
        url, "registry", "add-claim", "dr-screen", "2.2.0.0", "dme", "--metric", "specificity",
        "--value", "0.91", "--ci-lower", "0.88", "--ci-upper", "0.93", "--test-database", "db",
    )  # fmt: skip
    assert code == 0, output


def test_amend_claim_replaces_only_what_is_given(url: str) -> None:
    code, output = invoke(
        url, "registry", "amend-claim", *CLAIM, "--ci-upper", "0.914", "--why", "mistyped"
    )
    assert code == 0, output
    assert output.strip().endswith("0.872 [0.818, 0.915] -> 0.872 [0.818, 0.914]")
    action, _, payload = last_audit(url)
    assert action == "registry.amend_claim"
    assert payload["from"]["ci_upper"] == 0.915  # type: ignore[index]
    assert payload["to"]["test_database"] == "NIFDC fundus 2018"  # type: ignore[index]


def test_amend_claim_refuses_a_claim_no_chart_could_monitor(url: str) -> None:
    code, output = invoke(
        url, "registry", "amend-claim", *CLAIM,
        "--value", "0.999", "--ci-lower", "0.998", "--ci-upper", "1.0", "--why", "typo",
    )  # fmt: skip
    assert code == 1
    assert output.startswith("error: claim refused, no chart could monitor it:")
    assert "0.872 [0.818, 0.915]" in invoke(url, "registry", "list")[1]


def test_amend_claim_refuses_an_inconsistent_claim(url: str) -> None:
    code, output = invoke(url, "registry", "amend-claim", *CLAIM, "--value", "0.95", "--why", "x")
    assert code == 1
    assert output.strip() == (
        "error: invalid claim: Value error, claim value must lie within [ci_lower, ci_upper]"
    )


def test_amend_claim_with_nothing_to_amend_is_refused(url: str) -> None:
    code, output = invoke(url, "registry", "amend-claim", *CLAIM, "--why", "x")
    assert code == 1
    assert output.startswith("error: nothing to amend")


def test_withdraw_claim_removes_it_from_the_registry_s_claims(url: str) -> None:
    code, output = invoke(url, "registry", "withdraw-claim", *CLAIM, "--why", "wrong version")
    assert code == 0, output
    listed = invoke(url, "registry", "list")[1]
    assert "claims:" not in listed and "withdrawn claim" not in listed


def test_registry_list_all_shows_a_withdrawn_claim_with_when_who_and_why(url: str) -> None:
    invoke(url, "registry", "withdraw-claim", *CLAIM, "--why", "wrong version", "--actor", "ra")
    lines = invoke(url, "registry", "list", "--all")[1].splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("2.1.0.3"))
    assert "claims:" not in lines[at]
    assert re.fullmatch(
        r"withdrawn claim: referable_dr sensitivity 0\.872 \[0\.818, 0\.915\], "
        r"withdrawn \d{4}-\d\d-\d\d \d\d:\d\d UTC by ra: wrong version",
        lines[at + 1].strip(),
    ), lines


def test_claims_of_a_withdrawn_version_stay_as_they_were(url: str) -> None:
    invoke(url, "registry", "set-status", "dr-screen", "2.1.0.3", "withdrawn", "--why", "recall")
    code, output = invoke(url, "registry", "withdraw-claim", *CLAIM, "--why", "cleanup")
    assert code == 1
    assert "cannot withdraw a claim of a withdrawn version" in output


def test_the_registry_list_says_a_withdrawn_version_must_not_run(url: str) -> None:
    invoke(url, "registry", "set-status", "dr-screen", "2.1.0.3", "withdrawn", "--why", "recall")
    lines = invoke(url, "registry", "list")[1].splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("2.1.0.3"))
    assert lines[at + 1].strip() == "WITHDRAWN: its registration was withdrawn; it must not run"
