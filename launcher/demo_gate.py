"""The demo's standard test database gate: two candidate versions of the fleet's lung-nodule
device scored on a simulated NMPA-style test database, one registered and one refused.

Through the commands a manufacturer types (``postmarket testdb import``, ``testdb run``,
``registry set-status``, run in this process with their output captured) on the demo's
evidence store under the policy ``gate_required_for = deployment``: the database
(:mod:`simulator.standard_test_database`: five hospitals, GE and Siemens scanners, three
slice-thickness bands, double-read truth with adjudication) is imported; candidate 1.6.0.0
regresses on sub-millimetre slices only (its overall sensitivity still meets the claim) and
fails the gate, so registering it is refused with the reason; candidate 1.6.1.0 passes and
is registered. The acceptance criteria are fixed before the runs (:data:`GATE_CRITERIA`).

``python -m launcher.demo_gate [DIRECTORY]`` runs this part alone on a fresh SQLite store.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from evidence.testdb_gate import GateRow
from postmarket.contracts.events import Claim

__all__ = [
    "CANDIDATES",
    "GATE_CRITERIA",
    "Candidate",
    "CandidateOutcome",
    "GateDemoError",
    "GateDemoResult",
    "run_gate_demo",
]

GATE_DEVICE = "lung-nodule"
DATABASE_NAME = "lung-nodule-ct"
DATABASE_VERSION = "2026.1"
DATABASE = f"{DATABASE_NAME}@{DATABASE_VERSION}"
DATABASE_CASES = 1000
GATE_CRITERIA = (
    "--interval", "wilson", "--criterion", "lower_bound", "--stratum-criterion", "not_below",
    "--min-kappa", "0.6",
)  # fmt: skip
"""Pre-specified: overall, each claim's 95 % Wilson lower bound at or above its acceptable
level (the claim's lower confidence bound); each hospital, scanner and slice band not
significantly below it; the readers' kappa at least 0.6."""
DEMO_ACTOR = "postmarket-demo"


class GateDemoError(RuntimeError):
    """A step of the gate demo did not do what it was designed to; the message says which."""


@dataclass(frozen=True)
class Candidate:
    """A candidate version and how its outputs on the database are simulated."""

    version: str
    description: str
    sensitivity: float
    specificity: float
    band_sensitivity: Mapping[str, float] = field(default_factory=dict)


CANDIDATES = (
    Candidate(
        "1.6.0.0",
        "better on thick slices, regresses on sub-millimetre ones",
        sensitivity=0.97,
        specificity=0.92,
        band_sensitivity={"sub_mm": 0.74},
    ),
    Candidate("1.6.1.0", "the regression fixed", sensitivity=0.95, specificity=0.92),
)


@dataclass(frozen=True)
class CandidateOutcome:
    """What the gate and then the registry made of one candidate."""

    candidate: Candidate
    run_id: str
    passed: bool
    rows: tuple[GateRow, ...]
    """The verdict's rows, as stored."""
    registered: bool
    registry_answer: str
    """What ``registry set-status`` printed: the new status, or why it refused."""
    verdict_file: Path

    @property
    def failed(self) -> tuple[GateRow, ...]:
        return tuple(row for row in self.rows if row.met is False)

    @property
    def reader_agreement(self) -> GateRow | None:
        return next((row for row in self.rows if row.stratum == "reader_agreement"), None)


@dataclass(frozen=True)
class GateDemoResult:
    """The database, each candidate's outcome, and where the verdict tables are."""

    database: str
    cases: int
    description: str
    """Hospitals, scanners, bands and the readers' agreement, in one line."""
    candidates: tuple[CandidateOutcome, ...]
    directory: Path
    commands: tuple[str, ...] = ()
    """Every command the demo ran, as typed (the store's URL in the environment), also in
    ``commands.txt`` beside the files they name."""


class Postmarket:
    """``postmarket`` commands on one evidence store, under the demo's policy: the same
    commands a person types, run in this process (a process each would cost seconds of
    imports), their output captured."""

    def __init__(self, evidence_url: str) -> None:
        self.environment = {
            # The URL in the environment, as a person would keep a password out of argv.
            "POSTMARKET_EVIDENCE_URL": evidence_url,
            "POSTMARKET_GATE_REQUIRED_FOR": "deployment",
            "POSTMARKET_ACCEPTABLE_LEVEL": "ci_lower",
        }
        self.commands: list[str] = []

    def exports(self) -> list[str]:
        """The environment as ``export`` lines, the store's password hidden."""
        from sqlalchemy import make_url

        shown = dict(self.environment)
        url = shown["POSTMARKET_EVIDENCE_URL"]
        shown["POSTMARKET_EVIDENCE_URL"] = make_url(url).render_as_string(hide_password=True)
        return [f"export {name}={_quoted(value)}" for name, value in shown.items()]

    def __call__(self, *argv: str, expect: Sequence[int] = (0,)) -> Answer:
        """Run ``postmarket *argv``; :class:`GateDemoError` unless it exits as ``expect``."""
        import typer.main

        from launcher.cli import app

        self.commands.append("postmarket " + " ".join(_quoted(a) for a in argv))
        out, err = io.StringIO(), io.StringIO()
        command = typer.main.get_command(app)
        with _environment(self.environment), redirect_stdout(out), redirect_stderr(err):
            try:
                code = command.main(list(argv), prog_name="postmarket", standalone_mode=False)
            except click.ClickException as error:
                error.show(err)
                code = error.exit_code
            except click.Abort:
                code = 1
        answer = Answer(code if isinstance(code, int) else 0, out.getvalue(), err.getvalue())
        if answer.code not in expect:
            said = (answer.stderr.strip() or answer.stdout.strip()).splitlines()
            raise GateDemoError(
                f"postmarket {' '.join(argv[:2])} exited {answer.code}"
                + (f": {said[-1]}" if said else "")
            )
        return answer


@dataclass(frozen=True)
class Answer:
    """A command's exit code and what it printed."""

    code: int
    stdout: str
    stderr: str


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` while inside (settings are read from it), then as before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _quoted(argument: str) -> str:
    return f"'{argument}'" if not argument or any(c in argument for c in ' ;&|<>$"') else argument


def add_candidates(evidence_url: str, device_id: str, candidates: Sequence[Candidate]) -> str:
    """Put the candidates in the registry, unregistered, with the claims of the device's
    registered version measured on the database; the task they claim."""
    from evidence.store import EvidenceStore

    with EvidenceStore(evidence_url) as store:
        device = store.device(device_id)
        registered = [v for v in device.versions if v.registration_status == "registered"]
        if not registered or not registered[0].claims:
            raise GateDemoError(f"{device_id} has no registered version with claims to gate on")
        claims = registered[0].claims
        for candidate in candidates:
            store.add_version(device_id, candidate.version, status="unregistered", actor=DEMO_ACTOR)
            for claim in claims:
                on_database = Claim(
                    task=claim.task,
                    metric=claim.metric,
                    value=claim.value,
                    ci_lower=claim.ci_lower,
                    ci_upper=claim.ci_upper,
                    test_database=DATABASE,
                )
                store.add_claim(device_id, candidate.version, on_database, actor=DEMO_ACTOR)
        return claims[0].task


def run_gate_demo(
    evidence_url: str,
    directory: Path,
    device_id: str = GATE_DEVICE,
    candidates: Sequence[Candidate] = CANDIDATES,
    seed: int = 20260105,
) -> GateDemoResult:
    """Import the simulated database, gate every candidate, then try to register each:
    the evidence store at ``evidence_url`` must hold ``device_id`` with a registered version
    and its claims (the demo's fleet). Files go to ``directory``."""
    from evidence.store import EvidenceStore
    from evidence.testdb_gate_store import latest_run
    from simulator.standard_test_database import (
        candidate_outputs,
        lung_nodule_test_database,
        write_rows,
    )

    directory.mkdir(parents=True, exist_ok=True)
    cases = lung_nodule_test_database(DATABASE_CASES, seed)
    case_file = write_rows(cases, directory / f"{DATABASE_NAME}-{DATABASE_VERSION}.csv")
    task = add_candidates(evidence_url, device_id, candidates)
    postmarket = Postmarket(evidence_url)
    postmarket(
        "testdb", "import", DATABASE_NAME, "--version", DATABASE_VERSION, "--task", task,
        "--cases", str(case_file), "--actor", DEMO_ACTOR,
        "--description", "simulated: 5 hospitals, GE and Siemens CT, 3 slice bands, double read",
    )  # fmt: skip
    outcomes = []
    for candidate in candidates:
        outputs = candidate_outputs(
            cases,
            candidate.sensitivity,
            candidate.specificity,
            candidate.band_sensitivity,
            seed=seed + 1,
        )
        predictions = write_rows(outputs, directory / f"{device_id}-{candidate.version}.csv")
        gated = postmarket(
            "testdb", "run", "--device", device_id, "--version", candidate.version,
            "--database", DATABASE, "--predictions", str(predictions), *GATE_CRITERIA,
            "--actor", DEMO_ACTOR, expect=(0, 5),
        )  # fmt: skip
        verdict_file = directory / f"{device_id}-{candidate.version}-gate.txt"
        verdict_file.write_text(gated.stdout)
        registering = postmarket(
            "registry", "set-status", device_id, candidate.version, "registered",
            "--reference", f"NMPA-DEMO-{candidate.version}", "--regulator", "NMPA",
            "--why", "approved change registration (demo)", "--actor", DEMO_ACTOR,
            expect=(0, 1),
        )  # fmt: skip
        with EvidenceStore(evidence_url) as store:
            run = latest_run(store, device_id, candidate.version)
        if run is None:
            raise GateDemoError(f"testdb run stored no verdict for {candidate.version}")
        answer = (registering.stdout.strip() or registering.stderr.strip()).splitlines()
        outcomes.append(
            CandidateOutcome(
                candidate=candidate,
                run_id=run.run_id,
                passed=run.passed,
                rows=run.rows,
                registered=registering.code == 0,
                registry_answer=answer[-1].removeprefix("error: ") if answer else "",
                verdict_file=verdict_file,
            )
        )
    (directory / "commands.txt").write_text(
        "\n".join([*postmarket.exports(), *postmarket.commands]) + "\n"
    )
    return GateDemoResult(
        database=DATABASE,
        cases=len(cases),
        description=_describe(cases, outcomes[0].reader_agreement if outcomes else None),
        candidates=tuple(outcomes),
        directory=directory,
        commands=tuple(postmarket.commands),
    )


def _describe(cases: Sequence[Mapping[str, str]], agreement: GateRow | None) -> str:
    hospitals = len({case["hospital"] for case in cases})
    makers = " and ".join(sorted({case["scanner_manufacturer"] for case in cases}))
    positive = sum(case["label"] == "positive" for case in cases)
    adjudicated = sum(bool(case["adjudication"]) for case in cases)
    kappa = (
        ""
        if agreement is None or agreement.estimate is None
        else f" (readers' kappa {agreement.estimate:.2f})"
    )
    return (
        f"{len(cases):,} cases ({positive:,} malignant) from {hospitals} hospitals, {makers} "
        f"CT, slices about 5 mm, 1-2 mm and sub-millimetre; read twice blinded, "
        f"{adjudicated} adjudicated{kappa}"
    )


# --- what the user sees ------------------------------------------------------------------------

BAND_LABELS = {
    "about_5mm": "about 5 mm slices",
    "1_2mm": "1-2 mm slices",
    "sub_mm": "sub-mm slices",
}
SUMMARISED = {
    "hospitals": ("hospital",),
    "scanners": ("scanner_manufacturer", "scanner_model"),
}
"""Strata the table summarises (how many met); slice bands are shown one by one."""


def _cell(row: GateRow) -> str:
    if row.estimate is None or row.lower is None or row.upper is None:
        return row.outcome
    style = {"met": "green", "FAILED": "bold red"}.get(row.outcome, "dim")
    if row.metric == "kappa":
        shown = f"{row.estimate:.2f} ({row.lower:.2f}-{row.upper:.2f})"
    else:
        shown = f"{row.estimate:.1%} ({row.lower * 100:.1f}-{row.upper:.1%})"
    return f"{shown} [{style}]{row.outcome}[/]"


def _summary_cell(rows: Sequence[GateRow]) -> str:
    failed = [row for row in rows if row.met is False]
    if failed:
        return "[bold red]FAILED[/] " + ", ".join(row.value for row in failed)
    judged = sum(row.met is not None for row in rows)
    return f"{judged} of {len(rows)} [green]met[/]"


def _heterogeneity_cell(row: GateRow | None) -> str:
    if row is None or row.estimate is None:
        return ""
    if row.lower is None or row.upper is None:
        return f", I² {row.estimate:.0%}"
    return f", I² {row.estimate:.0%} ({row.lower:.0%}-{row.upper:.0%})"


def _row_of(outcome: CandidateOutcome, metric: str, stratum: str, value: str) -> str:
    for row in outcome.rows:
        if (row.metric, row.stratum, row.value) == (metric, stratum, value):
            return _cell(row)
    return "-"


def gate_table(result: GateDemoResult) -> Table:
    """Every candidate's verdict side by side: each claim overall and per slice band, the
    hospitals (with I²) and scanners summarised, and the readers' agreement."""
    table = Table(title=f"standard test database gate on {result.database}", title_justify="left")
    table.add_column("claim, stratum")
    for outcome in result.candidates:
        verdict = "[green]passed[/]" if outcome.passed else "[bold red]FAILED[/]"
        table.add_column(f"{outcome.candidate.version}: {verdict}")
    if not result.candidates:
        return table
    first = result.candidates[0]
    for metric in dict.fromkeys(row.metric for row in first.rows if row.metric != "kappa"):
        overall = next(r for r in first.rows if r.metric == metric and r.stratum == "overall")
        acceptable = "" if overall.acceptable is None else f" >= {overall.acceptable:.3f}"
        table.add_row(
            f"{metric}{acceptable}",
            *(_row_of(o, metric, "overall", "all") for o in result.candidates),
        )
        for band, label in BAND_LABELS.items():
            table.add_row(
                f"  {label}",
                *(_row_of(o, metric, "slice_thickness_band", band) for o in result.candidates),
            )
        for name, strata in SUMMARISED.items():
            table.add_row(
                f"  {name}",
                *(
                    _summary_cell([r for r in o.rows if r.metric == metric and r.stratum in strata])
                    + (
                        _heterogeneity_cell(_heterogeneity(o, metric))
                        if name == "hospitals"
                        else ""
                    )
                    for o in result.candidates
                ),
            )
    table.add_row(
        "readers' kappa",
        *(
            _cell(o.reader_agreement) if o.reader_agreement is not None else "-"
            for o in result.candidates
        ),
    )
    return table


def _heterogeneity(outcome: CandidateOutcome, metric: str) -> GateRow | None:
    return next(
        (r for r in outcome.rows if r.metric == metric and r.stratum == "heterogeneity"), None
    )


def _failure(row: GateRow) -> str:
    if row.stratum == "slice_thickness_band" and row.value in BAND_LABELS:
        where = BAND_LABELS[row.value]
    elif row.stratum == "overall":
        where = "overall"
    else:
        where = f"{row.stratum.replace('_', ' ')} {row.value}"
    criterion = row.criterion
    if row.acceptable is not None:
        criterion = criterion.replace("acceptable", f"{row.acceptable:.3f}")
    return f"{row.metric} on {where} ({row.successes}/{row.n}), needs {criterion}"


def gate_summary(result: GateDemoResult, console: Console, report: Path | None = None) -> None:
    """The verdict table, then what the registry answered each candidate, the database and
    the criteria in a line each, and where the full verdicts are."""
    console.print(gate_table(result))
    for outcome in result.candidates:
        candidate = outcome.candidate
        failed = "; ".join(_failure(row) for row in outcome.failed)
        gate = "[green]passed[/]" if outcome.passed else f"[bold red]FAILED[/] ({failed})"
        registry = (
            f"[green]registered[/] ({outcome.registry_answer})"
            if outcome.registered
            else f"[bold red]registration refused[/]: {outcome.registry_answer}"
        )
        console.print(
            f"{candidate.version} ({candidate.description}): gate {gate}; {registry}",
            highlight=False,
        )
    files = ", ".join(str(o.verdict_file) for o in result.candidates)
    console.print(
        f"[dim]{result.database}: {result.description}; criteria fixed before the runs: "
        "overall, the 95% Wilson lower bound at or above the claim's acceptable level; every "
        "hospital, scanner and slice band not significantly below it; readers' kappa >= 0.6. "
        f"Verdict tables: {files}; the commands: {result.directory / 'commands.txt'}"
        + (f"; the report's gate section: {report}#gate" if report is not None else "")
        + "[/]",
        highlight=False,
    )


def main(argv: Sequence[str] = ()) -> int:
    """The gate part alone, on a fresh SQLite store with the demo fleet's registry."""
    import tempfile

    from evidence.store import EvidenceStore
    from launcher.demo import DEMO_SCENARIO, register_fleet
    from simulator.scenario import load_scenario

    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="postmarket-gate-"))
    url = f"sqlite:///{directory / 'evidence.db'}"
    directory.mkdir(parents=True, exist_ok=True)
    with EvidenceStore(url) as store:
        register_fleet(store, load_scenario(DEMO_SCENARIO))
    console = Console()
    try:
        result = run_gate_demo(url, directory / "gate")
    except GateDemoError as error:
        console.print(f"[red]gate demo failed:[/] {error}", highlight=False)
        return 1
    gate_summary(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
