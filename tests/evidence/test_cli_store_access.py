"""How evidence-store commands open the store: writers create it, readers never do.

A command that only reads (registry list, alerts list|show, audit verify, report) opens an
existing store read-only and exits 3 when there is none; a mistyped path must not become
an empty store that verifies as "intact".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from evidence.cli import (
    EXIT_HEAD_DIFFERS,
    EXIT_STORE_UNAVAILABLE,
    read_only_url,
    sqlite_file,
    store_url,
)
from evidence.store import EvidenceStore
from launcher.cli import app

runner = CliRunner()

READING_COMMANDS = [
    ["registry", "list"],
    ["alerts", "list"],
    ["alerts", "show", "7b0c9a52-1f1e-4f35-9d0e-2a8b8c1e2f11"],
    ["audit", "verify"],
    ["report", "--device", "dr-screen", "--from", "2026-03-01", "--to", "2026-03-31",
     "--out", "report.html"],
]  # fmt: skip


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A newcomer's empty working directory, with no store configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTMARKET_EVIDENCE_URL", raising=False)
    monkeypatch.delenv("POSTMARKET_HOME", raising=False)
    return tmp_path


@pytest.mark.parametrize("command", READING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_reading_command_refuses_a_store_that_does_not_exist(
    command: list[str], tmp_path: Path
) -> None:
    typo = tmp_path / "evidnce-typo.db"
    code, output = run(*command, "--url", f"sqlite:///{typo}")
    assert code == EXIT_STORE_UNAVAILABLE
    assert output.strip() == (
        f"error: no evidence store at {typo}: point --url / POSTMARKET_EVIDENCE_URL at one, "
        "or create it with `postmarket evidence upgrade` (reading never creates one)"
    )
    assert not typo.exists()


def test_audit_verify_of_a_mistyped_path_is_not_an_intact_trail(tmp_path: Path) -> None:
    code, output = run("audit", "verify", "--url", f"sqlite:///{tmp_path / 'typo.db'}")
    assert code == EXIT_STORE_UNAVAILABLE
    assert "intact" not in output


@pytest.mark.parametrize("command", [["registry", "list"], ["alerts", "list"], ["audit", "verify"]])
def test_a_reading_command_in_a_fresh_directory_creates_nothing(
    command: list[str], fresh_directory: Path
) -> None:
    code, output = run(*command)
    assert code == EXIT_STORE_UNAVAILABLE
    assert output.startswith(f"error: no evidence store at {fresh_directory / '.postmarket'}")
    assert list(fresh_directory.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [["evidence", "upgrade"], ["registry", "add-device", "dr-screen", "--actor", "qa"]],
)
def test_a_writing_command_in_a_fresh_directory_creates_the_store(
    command: list[str], fresh_directory: Path
) -> None:
    code, output = run(*command)
    assert code == 0, output
    assert (fresh_directory / ".postmarket" / "evidence.db").is_file()


def test_a_bare_path_as_url_is_a_sqlite_file(fresh_directory: Path) -> None:
    assert run("registry", "add-device", "dr-screen", "--url", "reg.db", "--actor", "qa")[0] == 0
    code, output = run("registry", "list", "--url", "reg.db")
    assert code == 0
    assert output.startswith("dr-screen")
    assert (fresh_directory / "reg.db").is_file()


def test_a_malformed_url_is_refused_in_one_line(fresh_directory: Path) -> None:
    code, output = run("registry", "add-device", "dr-screen", "--url", "postgres:/evidence")
    assert code == EXIT_STORE_UNAVAILABLE
    assert output.startswith("error: 'postgres:/evidence' is not a database URL")
    assert list(fresh_directory.iterdir()) == []


def test_a_directory_as_store_is_refused_naming_a_file_to_use(tmp_path: Path) -> None:
    code, output = run("registry", "add-device", "dr-screen", "--url", str(tmp_path))
    assert code == EXIT_STORE_UNAVAILABLE
    assert output.strip() == (
        f"error: {tmp_path} is a directory; give the store's file, e.g. {tmp_path}/evidence.db"
    )


def test_a_file_that_is_not_an_evidence_store_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.db"
    other.write_bytes(b"")
    code, output = run("alerts", "list", "--url", str(other))
    assert code == EXIT_STORE_UNAVAILABLE
    assert "is not an evidence store (no schema)" in output


def test_store_url_takes_a_bare_path_as_a_sqlite_file(tmp_path: Path) -> None:
    assert store_url(str(tmp_path / "reg.db")) == f"sqlite:///{tmp_path / 'reg.db'}"
    assert store_url("sqlite:///reg.db") == "sqlite:///reg.db"


def test_a_read_only_sqlite_store_refuses_writes(sqlite_url: str) -> None:
    EvidenceStore(sqlite_url).close()
    url = make_url(sqlite_url)
    read_only = read_only_url(url, sqlite_file(url)).render_as_string(hide_password=False)
    with EvidenceStore(read_only, migrate=False) as store:
        with pytest.raises(OperationalError, match="readonly database"):
            store.add_device("dr-screen", tasks=[], actor="regulator")


def test_a_read_only_postgresql_url_makes_sessions_read_only() -> None:
    url = make_url("postgresql+psycopg://reviewer@db/evidence?options=-c%20search_path%3Dpms")
    options = read_only_url(url, None).query["options"]
    assert options == "-c search_path=pms -c default_transaction_read_only=on"


@pytest.mark.integration
def test_a_read_only_postgresql_store_refuses_writes(evidence_url: str) -> None:
    if not evidence_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL read-only transaction")
    EvidenceStore(evidence_url).close()
    read_only = read_only_url(make_url(evidence_url), None).render_as_string(hide_password=False)
    with EvidenceStore(read_only, migrate=False) as store:
        with store.engine.connect() as connection:
            assert connection.execute(text("SHOW transaction_read_only")).scalar() == "on"
        with pytest.raises(Exception, match="read-only transaction"):
            store.add_device("dr-screen", tasks=[], actor="regulator")


def test_reading_commands_read_what_writing_commands_wrote(evidence_url: str) -> None:
    assert (
        run("registry", "add-device", "dr-screen", "--url", evidence_url, "--actor", "qa")[0] == 0
    )
    code, output = run("registry", "list", "--url", evidence_url)
    assert code == 0, output
    assert output.startswith("dr-screen")
    assert run("audit", "verify", "--url", evidence_url)[0] == 0


# --- audit verify --expect-head ----------------------------------------------------------


def head_hash(url: str) -> str:
    code, output = run("audit", "verify", "--url", url)
    assert code == 0, output
    found = re.search(r"head hash ([0-9a-f]{64})", output)
    assert found is not None
    return found.group(1)


def test_audit_verify_passes_when_the_head_is_the_kept_one(sqlite_url: str) -> None:
    run("registry", "add-device", "dr-screen", "--url", sqlite_url, "--actor", "qa")
    kept = head_hash(sqlite_url)
    code, output = run("audit", "verify", "--url", sqlite_url, "--expect-head", kept.upper())
    assert code == 0
    assert f"head hash {kept}" in output


def test_audit_verify_fails_giving_both_hashes_when_the_head_moved(sqlite_url: str) -> None:
    run("registry", "add-device", "dr-screen", "--url", sqlite_url, "--actor", "qa")
    kept = head_hash(sqlite_url)
    run("registry", "add-device", "lung-ct", "--url", sqlite_url, "--actor", "qa")
    now = head_hash(sqlite_url)
    code, output = run("audit", "verify", "--url", sqlite_url, "--expect-head", kept)
    assert code == EXIT_HEAD_DIFFERS
    assert output.strip() == (
        f"error: audit trail head is {now}, expected {kept} "
        "(it is entry 1 of 2: 1 entry was added since)"
    )


def test_audit_verify_says_when_the_kept_head_is_gone_from_the_chain(sqlite_url: str) -> None:
    run("registry", "add-device", "dr-screen", "--url", sqlite_url, "--actor", "qa")
    code, output = run("audit", "verify", "--url", sqlite_url, "--expect-head", "ab" * 32)
    assert code == EXIT_HEAD_DIFFERS
    assert "it is not in the chain: entries were removed or rewritten since" in output


# --- dates and output files ----------------------------------------------------------------


def test_a_day_that_does_not_exist_is_no_such_date(sqlite_url: str) -> None:
    run("registry", "add-device", "dr-screen", "--url", sqlite_url, "--actor", "qa")
    code, output = run(
        "report", "--device", "dr-screen", "--from", "2026-02-30", "--to", "2026-03-31",
        "--out", "r.html", "--url", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert output.startswith("error: --from 2026-02-30: no such date")


def test_a_registration_day_that_does_not_exist_is_no_such_date(sqlite_url: str) -> None:
    code, output = run(
        "registry", "add-version", "dr-screen", "2.1.0.3", "--registered-on", "2026-02-30",
        "--url", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert output.startswith("error: --registered-on 2026-02-30: no such date")


def test_a_malformed_day_is_a_format_error(sqlite_url: str) -> None:
    code, output = run(
        "report", "--device", "dr-screen", "--from", "2026/03/01", "--to", "2026-03-31",
        "--out", "r.html", "--url", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert output.strip() == "error: --from '2026/03/01' is not a date: write YYYY-MM-DD"


def test_a_report_into_a_directory_is_refused_naming_a_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    run("registry", "add-device", "dr-screen", "--url", sqlite_url, "--actor", "qa")
    code, output = run(
        "report", "--device", "dr-screen", "--from", "2026-03-01", "--to", "2026-03-31",
        "--out", str(tmp_path), "--url", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert output.strip() == (
        f"error: --out {tmp_path} is a directory; give a file, e.g. --out {tmp_path}/report.html"
    )


def test_regulator_role_refuses_sqlite_without_creating_a_store(tmp_path: Path) -> None:
    """Roles are PostgreSQL's: the refusal comes before anything is opened or created."""
    target = tmp_path / "evidence.db"
    result = runner.invoke(app, ["evidence", "regulator-role", "--url", f"sqlite:///{target}"])
    assert result.exit_code == 1, result.output
    assert "read-only roles need PostgreSQL" in result.output
    assert not target.exists()
