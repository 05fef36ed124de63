"""``postmarket registry | alerts | audit | evidence``: the evidence store from the shell.

Only typer is imported here; SQLAlchemy and the store are imported inside each command, so
``postmarket`` keeps working in a collector install that has no SQLAlchemy.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy import URL

    from postmarket.contracts.events import Alert, Claim
    from postmarket.evidence.sink import SinkCounts
    from postmarket.evidence.store import AlertView, EvidenceStore

registry_app = typer.Typer(
    help="Device registry: devices, versions, registered claims and change records.",
    no_args_is_help=True,
)
alerts_app = typer.Typer(
    help="Alerts and their lifecycle: open -> acknowledged -> resolved.", no_args_is_help=True
)
audit_app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)
evidence_app = typer.Typer(
    help="The evidence database: migrations and read-only access for regulators.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="the evidence store: a SQLAlchemy URL, or a SQLite file's path "
        "\\[default: POSTMARKET_EVIDENCE_URL, else <POSTMARKET_HOME>/evidence.db]",
        show_default=False,
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="who makes this change \\[default: your login name]"),
]


REFERENCE_PREVALENCE_HELP = (
    "prevalence, strictly between 0 and 1, of the reference/validation population at which "
    "the version's scores are calibrated; workers adjust their label-free estimate to each "
    "site's prevalence from it"
)


EXIT_REFUSED = 1
"""The request was refused (a bad value, a state that forbids it) or the audit chain is broken."""
EXIT_STORE_UNAVAILABLE = 3
"""The evidence store does not exist, cannot be reached, or is not an evidence store."""
EXIT_HEAD_DIFFERS = 4
"""``audit verify --expect-head``: the chain's head is not the hash kept elsewhere."""
# Click itself exits 2 on a usage error (unknown option, missing argument).

SQLITE_READ_ONLY = {"mode": "ro", "uri": "true"}
"""Query of a SQLite URI that opens an existing file read-only and never creates one."""
POSTGRESQL_READ_ONLY = "-c default_transaction_read_only=on"
"""libpq ``options`` that make every transaction of the session read-only."""


def store_url(target: str) -> str:
    """The SQLAlchemy URL of ``--url`` / POSTMARKET_EVIDENCE_URL: a bare path is a SQLite file.

    A newcomer writes ``--url reg.db``; anything with a scheme (``x://`` or ``x:``) is kept
    as written, so a mistyped URL is refused rather than created as an oddly named file.

    >>> store_url("reg.db") == f"sqlite:///{Path('reg.db').absolute()}"
    True
    >>> store_url("postgresql+psycopg://host/evidence")
    'postgresql+psycopg://host/evidence'
    """
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):
        return target
    return f"sqlite:///{Path(target).expanduser().absolute()}"


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite store; None for other databases, in-memory and URI-form SQLite."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or "uri" in url.query:
        return None
    return Path(database).absolute()


def read_only_url(url: URL, file: Path | None) -> URL:
    """``url`` opened so that nothing can be written, and (SQLite) nothing created."""
    if file is not None:
        return url.set(database=f"file:{quote(str(file))}", query=SQLITE_READ_ONLY)
    if url.get_backend_name() == "postgresql":
        given = url.query.get("options", "")
        options = " ".join([*([given] if isinstance(given, str) else given), POSTGRESQL_READ_ONLY])
        return url.update_query_dict({"options": options.strip()})
    return url


@contextmanager
def _open(url: str | None, *, read_only: bool = False) -> Iterator[EvidenceStore]:
    """The evidence store, or one line saying why it cannot be used (never a traceback).

    A command that writes creates a SQLite store (and its directory) and migrates it; one
    that only reads opens an existing store read-only, unmigrated, and refuses a missing
    one, so a mistyped path is an error rather than an empty, "intact" store.
    """
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from postmarket.evidence.store import EvidenceStore

    if url is None:
        from postmarket.config import Settings

        url = Settings().evidence_database_url
    target = store_url(url)
    try:
        parsed = make_url(target)
    except ArgumentError:
        raise _unavailable(
            f"{url!r} is not a database URL: write sqlite:///path/evidence.db, a file path, "
            "or postgresql+psycopg://user@host/database"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    file = sqlite_file(parsed)
    if file is not None and file.is_dir():
        raise _unavailable(f"{file} is a directory; give the store's file, e.g. {file}/evidence.db")
    if read_only:
        if file is not None and not file.is_file():
            raise _unavailable(
                f"no evidence store at {file}: point --url / POSTMARKET_EVIDENCE_URL at one, "
                "or create it with `postmarket evidence upgrade` (reading never creates one)"
            )
        parsed = read_only_url(parsed, file)
    elif file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _unavailable(f"cannot create {file.parent}: {error.strerror}") from None
    try:
        store = EvidenceStore(parsed.render_as_string(hide_password=False), migrate=not read_only)
    except SQLAlchemyError as error:
        raise _cannot_open(shown, error) from None
    with store:
        try:
            if read_only:
                _check_evidence_schema(store, shown)
        except SQLAlchemyError as error:
            raise _cannot_open(shown, error) from None
        try:
            yield store
        except SQLAlchemyError as error:
            raise _fail(f"the evidence store {shown} refused: {_first_line(error)}") from None


def _cannot_open(shown: str, error: Exception) -> typer.Exit:
    return _unavailable(
        f"cannot open the evidence store {shown}: {_first_line(error)}. Start the local "
        "stack (postmarket stack up) or point --url / POSTMARKET_EVIDENCE_URL at a store"
    )


def _check_evidence_schema(store: EvidenceStore, shown: str) -> None:
    """Refuse a database that was never made an evidence store (reads would fail obscurely)."""
    from sqlalchemy import inspect

    with store.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            raise _unavailable(
                f"{shown} is not an evidence store (no schema); create one with "
                "`postmarket evidence upgrade --url ...`"
            )


def _first_line(error: Exception) -> str:
    """The driver's own message, without SQLAlchemy's statement and background link."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _entries(count: int) -> str:
    return "entry was" if count == 1 else "entries were"


def _day(option: str, text: str) -> date:
    """The calendar day ``text`` names, or one line telling a typo from an impossible day."""
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise _fail(f"{option} {text}: no such date ({error})") from None
        raise _fail(f"{option} {text!r} is not a date: write YYYY-MM-DD") from None


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


def _fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _unavailable(message: str) -> typer.Exit:
    return _fail(message, EXIT_STORE_UNAVAILABLE)


# --- registry ----------------------------------------------------------------------------


@registry_app.command("add-device")
def add_device(
    device_id: Annotated[str, typer.Argument(help="device identifier, as collectors report it")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="a task the device performs (repeatable)")
    ] = None,
    name: Annotated[str, typer.Option(help="product name")] = "",
    manufacturer: Annotated[str, typer.Option(help="manufacturer")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a device and its tasks to the registry."""
    from postmarket.evidence.store import EvidenceError

    with _open(url) as store:
        try:
            store.add_device(
                device_id,
                name=name,
                manufacturer=manufacturer,
                tasks=task or [],
                actor=_actor(actor),
            )
        except EvidenceError as error:
            raise _fail(str(error)) from None
    typer.echo(f"added device {device_id}")


@registry_app.command("add-version")
def add_version(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    status: Annotated[
        str, typer.Option(help="registered, pending, unregistered or withdrawn")
    ] = "registered",
    regulator: Annotated[str, typer.Option(help="e.g. NMPA, FDA")] = "",
    reference: Annotated[str, typer.Option(help="registration certificate or submission no.")] = "",
    registered_on: Annotated[
        str | None, typer.Option(help="date of registration, YYYY-MM-DD")
    ] = None,
    reference_prevalence: Annotated[
        float | None,
        typer.Option(
            "--reference-prevalence",
            metavar="P",
            help=REFERENCE_PREVALENCE_HELP + " \\[default: unknown, not adjusted]",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a version of a device with its registration status."""
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    day = _day("--registered-on", registered_on) if registered_on else None
    with _open(url) as store:
        try:
            parsed = store.add_version(
                device_id,
                version,
                status=status,
                regulator=regulator,
                reference=reference,
                registered_on=day,
                reference_prevalence=reference_prevalence,
                actor=_actor(actor),
            )
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(f"added {device_id} {parsed} ({status})")


@registry_app.command("set-reference-prevalence")
def set_reference_prevalence(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    prevalence: Annotated[
        float | None,
        typer.Argument(metavar="[P]", help=REFERENCE_PREVALENCE_HELP, show_default=False),
    ] = None,
    unknown: Annotated[
        bool, typer.Option("--unknown", help="forget the stored value (published as unknown)")
    ] = False,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Set the reference prevalence of a version in the registry (or forget it: --unknown)."""
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    if prevalence is None and not unknown:
        raise _fail("give the prevalence P, or --unknown to forget the stored one")
    if prevalence is not None and unknown:
        raise _fail("give the prevalence P or --unknown, not both")
    with _open(url) as store:
        try:
            store.set_reference_prevalence(device_id, version, prevalence, actor=_actor(actor))
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    shown = "unknown" if prevalence is None else f"{prevalence:g}"
    typer.echo(f"set the reference prevalence of {device_id} {version} to {shown}")


@registry_app.command("add-claim")
def add_claim(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    task: Annotated[str, typer.Argument(help="the task the claim is for")],
    metric: Annotated[str, typer.Option(help="sensitivity, specificity, ppv, npv or auc")],
    value: Annotated[float, typer.Option(help="claimed value, 0-1")],
    ci_lower: Annotated[float, typer.Option(help="lower bound of the claim's CI")],
    ci_upper: Annotated[float, typer.Option(help="upper bound of the claim's CI")],
    test_database: Annotated[str, typer.Option(help="the (standard) test database it was on")],
    acquisition: Annotated[
        list[str] | None,
        typer.Option(help="intended acquisition, e.g. 'CT 1-2 mm' (repeatable)"),
    ] = None,
    population: Annotated[
        list[str] | None, typer.Option(help="intended population (repeatable)")
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Record a registered performance claim (with CI) for a version and task."""
    from pydantic import ValidationError

    from postmarket.contracts import Claim
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    try:
        claim = Claim.model_validate(
            {
                "task": task,
                "metric": metric,
                "value": value,
                "ci_lower": ci_lower,
                "ci_upper": ci_upper,
                "test_database": test_database,
            }
        )
    except ValidationError as error:
        raise _fail(f"invalid claim: {_problems(error)}") from None
    _check_chartable(claim)
    with _open(url) as store:
        _check_test_database(store, claim.test_database)
        try:
            store.add_claim(
                device_id,
                version,
                claim,
                intended_acquisitions=acquisition or [],
                intended_populations=population or [],
                actor=_actor(actor),
            )
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(f"added claim {metric} {value} [{ci_lower}, {ci_upper}] to {device_id} {version}")


def _check_test_database(store: EvidenceStore, named: str) -> None:
    """A claim naming its database as ``NAME@VERSION`` must name a version the store holds
    (``postmarket testdb``); other text (a database kept elsewhere) is taken as written."""
    from postmarket.evidence.testdb_store import TestDatabaseError, load_version

    name, at, version = named.rpartition("@")
    if not (at and name and version):
        return
    try:
        load_version(store, name, version)
    except TestDatabaseError as error:
        raise _fail(f"--test-database {named}: {error}") from None


def _check_chartable(claim: Claim) -> None:
    """Refuse a sensitivity or specificity claim no labelled chart could monitor under the
    configured acceptable level (a stream would otherwise run without one)."""
    from postmarket.claim_levels import LevelPolicy, UnmonitorableClaim, chart_levels
    from postmarket.config import Settings

    if claim.metric not in ("sensitivity", "specificity"):
        return
    policy = LevelPolicy(Settings().acceptable_level)
    try:
        chart_levels(claim.metric, claim.value, claim.ci_lower, policy)
    except UnmonitorableClaim as reason:
        raise _fail(f"claim refused, no chart could monitor it: {reason}") from None


@registry_app.command("add-change")
def add_change(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="the version the change produced")],
    kind: Annotated[str, typer.Option(help="algorithm_framework, training_database or bug_fix")],
    fraction: Annotated[
        float | None,
        typer.Option(help="fraction (0-1) of the training database changed (training_database)"),
    ] = None,
    description: Annotated[str, typer.Option(help="what changed and why")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Record what changed to make a version (its change record)."""
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import ChangeKind, ChangeRecord, PolicyError, VersionError

    try:
        record = ChangeRecord(ChangeKind(kind), description, fraction)
    except ValueError as error:
        message = str(error)
        if not isinstance(error, PolicyError):
            message = f"unknown kind {kind!r}; use {', '.join(k.value for k in ChangeKind)}"
        raise _fail(message) from None
    with _open(url) as store:
        try:
            store.add_change(device_id, version, record, actor=_actor(actor))
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(f"added {kind} change record to {device_id} {version}")


WhyOption = Annotated[
    str,
    typer.Option(
        "--why",
        help="why the registered record changes (kept in the audit trail), e.g. "
        "'NMPA approval 2026-03-02' or 'value mistyped from the certificate'",
    ),
]


def _reason(why: str) -> str:
    """``--why`` as given, refused when blank: every change to the registry says why."""
    if not why.strip():
        raise _fail("--why is empty: say why the registry changes (the audit trail keeps it)")
    return why.strip()


@registry_app.command("add-task")
def add_task(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    task: Annotated[str, typer.Argument(help="the task, as collectors report it")],
    why: WhyOption,
    description: Annotated[str, typer.Option(help="what the task is")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a task to a device already in the registry (then add-claim its claims)."""
    from postmarket.evidence.store import EvidenceError

    reason = _reason(why)
    with _open(url) as store:
        try:
            store.add_task(
                device_id, task, description=description, why=reason, actor=_actor(actor)
            )
        except EvidenceError as error:
            raise _fail(str(error)) from None
    typer.echo(f"added task {task} to {device_id}")


@registry_app.command("set-status")
def set_status(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    status: Annotated[str, typer.Argument(help="pending, registered, unregistered or withdrawn")],
    why: WhyOption,
    reference: Annotated[
        str, typer.Option(help="submission or registration certificate number")
    ] = "",
    regulator: Annotated[str, typer.Option(help="e.g. NMPA, FDA \\[default: as on record]")] = "",
    registered_on: Annotated[
        str | None, typer.Option(help="date of registration, YYYY-MM-DD")
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Change a version's registration status, under change control.

    unregistered -> pending (submitted) or registered; pending -> registered (approved) or
    unregistered (refused or retracted); registered -> withdrawn, never back to pending or
    unregistered. A withdrawn version returns to pending or registered only as a new
    registration entry: with a new --reference, not the withdrawn one. Registered needs a
    --reference, given now or on record. The audit trail keeps the old status, reference
    and date beside the new ones, with --actor and --why. Publish to tell the workers.
    """
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    reason = _reason(why)
    day = _day("--registered-on", registered_on) if registered_on else None
    with _open(url) as store:
        try:
            previous = store.set_registration_status(
                device_id,
                version,
                status,
                reference=reference,
                regulator=regulator,
                registered_on=day,
                why=reason,
                actor=_actor(actor),
            )
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(f"{device_id} {version}: {previous} -> {status}")


@registry_app.command("amend-claim")
def amend_claim(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    task: Annotated[str, typer.Argument(help="the task the claim is for")],
    metric: Annotated[str, typer.Option(help="the claimed metric to amend")],
    why: WhyOption,
    value: Annotated[float | None, typer.Option(help="claimed value, 0-1")] = None,
    ci_lower: Annotated[float | None, typer.Option(help="lower bound of the claim's CI")] = None,
    ci_upper: Annotated[float | None, typer.Option(help="upper bound of the claim's CI")] = None,
    test_database: Annotated[
        str | None, typer.Option(help="the (standard) test database it was on")
    ] = None,
    acquisition: Annotated[
        list[str] | None,
        typer.Option(help="intended acquisition (repeatable; replaces the old list)"),
    ] = None,
    population: Annotated[
        list[str] | None,
        typer.Option(help="intended population (repeatable; replaces the old list)"),
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Correct a claim of a version: what is given replaces the old, the rest is kept.

    The amended claim must pass add-claim's checks (a claim no chart could monitor is
    refused). A withdrawn version's claims are never changed; a registered version's only
    with --why, and the audit trail keeps the old claim beside the new. To correct the task
    or metric itself, withdraw-claim and add-claim.
    """
    from pydantic import ValidationError

    from postmarket.contracts import Claim
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    reason = _reason(why)
    changes = {
        "value": value,
        "ci_lower": ci_lower,
        "ci_upper": ci_upper,
        "test_database": test_database,
    }
    given = {name: new for name, new in changes.items() if new is not None}
    if not given and acquisition is None and population is None:
        raise _fail(
            "nothing to amend: give --value, --ci-lower, --ci-upper, --test-database, "
            "--acquisition or --population"
        )
    with _open(url) as store:
        if test_database is not None:
            _check_test_database(store, test_database)
        try:
            old = store.claim(device_id, version, task, metric)
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
        try:
            claim = Claim.model_validate({**old.model_dump(), **given})
        except ValidationError as error:
            raise _fail(f"invalid claim: {_problems(error)}") from None
        _check_chartable(claim)
        try:
            store.amend_claim(
                device_id,
                version,
                claim,
                intended_acquisitions=acquisition,
                intended_populations=population,
                why=reason,
                actor=_actor(actor),
            )
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(
        f"amended {device_id} {version} {task} {metric}: {old.value} [{old.ci_lower}, "
        f"{old.ci_upper}] -> {claim.value} [{claim.ci_lower}, {claim.ci_upper}]"
    )


@registry_app.command("withdraw-claim")
def withdraw_claim(
    device_id: Annotated[str, typer.Argument(help="device identifier")],
    version: Annotated[str, typer.Argument(help="version S.Y.Z.B")],
    task: Annotated[str, typer.Argument(help="the task the claim is for")],
    metric: Annotated[str, typer.Option(help="the claimed metric to withdraw")],
    why: WhyOption,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Withdraw a (mistyped) claim from a version; publish to stop the workers testing it.

    Under amend-claim's rules: never on a withdrawn version, with --why on a registered one.
    The audit trail keeps the whole withdrawn claim.
    """
    from postmarket.evidence.store import EvidenceError
    from postmarket.versions import VersionError

    reason = _reason(why)
    with _open(url) as store:
        try:
            old = store.withdraw_claim(
                device_id, version, task, metric, why=reason, actor=_actor(actor)
            )
        except (EvidenceError, VersionError) as error:
            raise _fail(str(error)) from None
    typer.echo(
        f"withdrew {device_id} {version} {task} {metric} {old.value} "
        f"[{old.ci_lower}, {old.ci_upper}]"
    )


def _problems(error: ValidationError) -> str:
    """A pydantic error as one line: each field (if one is to blame) and what is wrong."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
        for e in error.errors()
    )


@registry_app.command("list")
def list_registry(
    policy: Annotated[
        str, typer.Option(help="change-control preset used to judge unregistered versions")
    ] = "nmpa-syzb",
    url: UrlOption = None,
) -> None:
    """List devices and versions with status, change, claims and registration verdict.

    An unregistered version is judged under POLICY: may it run, or does it need registration?
    """
    from postmarket.versions import PolicyError, preset, registration_required

    try:
        active = preset(policy)
    except PolicyError as error:
        raise _fail(str(error)) from None
    with _open(url, read_only=True) as store:
        devices = store.devices()
    if not devices:
        typer.echo("the registry is empty")
    for device in devices:
        typer.echo(f"{device.device_id}  {device.name}  {device.manufacturer}".rstrip())
        typer.echo(f"  tasks: {', '.join(device.tasks) or '-'}")
        registered = [v.version for v in device.versions if v.registration_status == "registered"]
        for view in device.versions:
            line = f"  {view.version!s:<14} {view.registration_status:<12}"
            if view.reference_prevalence is not None:
                line += f" reference prevalence: {view.reference_prevalence:g}"
            if view.change is not None:
                line += f" change: {view.change.kind.value}"
            if view.claims:
                claims = ", ".join(
                    f"{c.task} {c.metric} {c.value:.3f} [{c.ci_lower:.3f}, {c.ci_upper:.3f}]"
                    for c in view.claims
                )
                line += f" claims: {claims}"
            if view.registration_status != "registered":
                base = max((v for v in registered if v <= view.version), default=None)
                decision = registration_required(base, view.version, view.change, active)
                verdict = "NEEDS REGISTRATION" if decision.required else "may run"
                line += f"\n    {verdict} under {active.name}: {decision.reason}"
            typer.echo(line)


@registry_app.command("publish")
def publish(
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
    ] = None,
    reference_prevalence: Annotated[
        list[str] | None,
        typer.Option(
            "--reference-prevalence",
            metavar="DEVICE[@VERSION]=P",
            help="override the stored prevalence (strictly between 0 and 1) of the "
            "reference/validation population at which a device's scores are calibrated, for "
            "all its versions or one (repeatable; DEVICE@VERSION wins over DEVICE, both over "
            "the store) \\[default: each version's stored value, else unknown]",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            metavar="SECONDS",
            help="how long to wait for the broker to answer before giving up",
        ),
    ] = 5.0,
) -> None:
    """Publish every device version (status, change class, claims, reference prevalence)
    to pms.registry.v1.

    Workers read claims and registration status from that compacted topic; publishing
    again is harmless (the newest entry per device|version is kept). Each version carries
    the reference prevalence stored with it (add-version, set-reference-prevalence) unless
    --reference-prevalence overrides it; a version with neither is published as unknown.
    """
    from postmarket.config import Settings
    from postmarket.evidence.registry_topic import (
        parse_reference_prevalence,
        publish_registry,
        registry_entries,
    )

    try:
        prevalences = parse_reference_prevalence(reference_prevalence or [])
    except ValueError as error:
        raise _fail(f"--reference-prevalence: {error}") from None
    with _open(url, read_only=True) as store:
        devices = store.devices()
    try:
        entries = registry_entries(devices, reference_prevalence=prevalences)
    except ValueError as error:
        raise _fail(f"--reference-prevalence: {error}") from None
    if not entries:
        typer.echo("the registry is empty: nothing to publish")
        return
    from postmarket import topics
    from postmarket.preflight import ServiceProblem, check_kafka, describe_error, exit_for

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    security = settings.kafka_security()
    try:  # seconds, not kafka-python's 30 s timeouts, when the broker is not there
        check_kafka(target, security, connect_timeout, topics=[topics.REGISTRY])
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    try:
        sent = publish_registry(entries, target, security)
    except Exception as error:  # kafka-python raises many kinds; say which and stop
        raise _fail(f"publishing to {target} failed: {describe_error(error)}") from None
    typer.echo(f"published {sent} registry entries to pms.registry.v1 at {target}")


# --- alerts ------------------------------------------------------------------------------


ALERT_COLUMNS = (
    "ID", "STATUS", "SEVERITY", "DETECTOR", "DEVICE", "VERSION", "SITE", "TASK",
    "RAISED (UTC)", "RECURRED",
)  # fmt: skip
ALERT_ID_HELP = "the alert's id: its UUID, or its first 8 hex characters as `alerts list` shows"


def _alert_cells(view: AlertView) -> tuple[str, ...]:
    """One ``alerts list`` row, in :data:`ALERT_COLUMNS` order, with the short id."""
    from postmarket.evidence.store import short_alert_id

    alert, stream = view.alert, view.alert.stream
    return (
        short_alert_id(alert.alert_id),
        view.status.value,
        alert.severity,
        alert.detector,
        stream.device_id,
        stream.device_version,
        stream.site_id,
        stream.task,
        f"{alert.raised_at:%Y-%m-%d %H:%M}",
        _recurred(view) or "-",
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell, two spaces apart.

    >>> _table(("ID", "STATUS"), [("7b0c9a52", "open")])
    ['ID        STATUS', '7b0c9a52  open']
    """
    widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _alert_json(view: AlertView) -> dict[str, object]:
    """An alert as ``alerts list --json`` gives it: as raised (full id) plus its lifecycle."""
    return {
        **view.alert.model_dump(mode="json"),
        "status": view.status.value,
        "acknowledged_by": view.acknowledged_by,
        "acknowledged_at": _iso(view.acknowledged_at),
        "acknowledgement": view.acknowledgement,
        "resolved_by": view.resolved_by,
        "resolved_at": _iso(view.resolved_at),
        "resolution": view.resolution,
        "recurrences": view.recurrences,
        "last_recurred_at": _iso(view.last_recurred_at),
        "highest_severity": view.highest_severity,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _recurred(view: AlertView) -> str:
    """How often the alert recurred, when last, and how severe at most; empty if never."""
    if view.last_recurred_at is None:
        return ""
    return (
        f"recurred {view.recurrences}x, last {view.last_recurred_at:%Y-%m-%d %H:%M}, "
        f"up to {view.highest_severity}"
    )


def _recurrence_line(recurrence: Alert) -> str:
    return (
        f"  {recurrence.raised_at.isoformat()}  {recurrence.severity:<8} "
        f"statistic {recurrence.statistic:g}, threshold {recurrence.threshold:g}, cases "
        f"{recurrence.first_case_time.isoformat()} .. {recurrence.last_case_time.isoformat()}"
        f"  ({recurrence.alert_id})"
    )


@alerts_app.command("list")
def list_alerts(
    status: Annotated[
        str | None, typer.Option(help="only alerts with this status: open, acknowledged, resolved")
    ] = None,
    device: Annotated[str | None, typer.Option(help="only alerts of this device")] = None,
    site: Annotated[str | None, typer.Option(help="only alerts of this site")] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="only alerts raised on or after DATE (YYYY-MM-DD, UTC)"),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print one JSON array: each alert in full, lifecycle too"),
    ] = False,
    url: UrlOption = None,
) -> None:
    """List alerts, newest first, with their short ids (the first 8 hex characters of the
    alert id), which show, ack, resolve and rebaseline accept as well as the full id."""
    import json

    from postmarket.evidence.lifecycle import AlertStatus

    try:
        wanted = AlertStatus(status) if status else None
    except ValueError:
        raise _fail(f"unknown status {status!r}; use open, acknowledged or resolved") from None
    start = None if since is None else datetime.combine(_day("--since", since), time(), UTC)
    with _open(url, read_only=True) as store:
        views = store.alerts(wanted, device_id=device, site_id=site, since=start)
    if as_json:
        typer.echo(json.dumps([_alert_json(view) for view in views], indent=2))
    elif not views:
        typer.echo("no alerts")
    else:
        typer.echo("\n".join(_table(ALERT_COLUMNS, [_alert_cells(view) for view in views])))


@alerts_app.command("show")
def show_alert(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    url: UrlOption = None,
) -> None:
    """Show one alert: its evidence, message, lifecycle and recurrences."""
    from postmarket.evidence.store import NotFound

    with _open(url, read_only=True) as store:
        try:
            view = store.alert(alert_id)
        except NotFound as error:
            raise _fail(str(error)) from None
        recurrences = store.alert_recurrences(alert_id)
    alert = view.alert
    lines = [
        f"alert        {alert.alert_id}",
        f"status       {view.status.value}",
        f"stream       {alert.stream.as_key()}",
        f"detector     {alert.detector} (statistic {alert.statistic:g}, "
        f"threshold {alert.threshold:g})",
        f"severity     {alert.severity}",
        f"cases        {alert.first_case_time.isoformat()} .. {alert.last_case_time.isoformat()}",
        f"evidence     {', '.join(f'{k}={v}' for k, v in sorted(alert.evidence.items()))}",
        f"raised at    {alert.raised_at.isoformat()}",
        f"message      {alert.message}",
    ]
    if view.acknowledged_at is not None:
        lines.append(
            f"acknowledged {view.acknowledged_at.isoformat()} by {view.acknowledged_by}: "
            f"{view.acknowledgement}"
        )
    if view.resolved_at is not None:
        lines.append(
            f"resolved     {view.resolved_at.isoformat()} by {view.resolved_by}: {view.resolution}"
        )
    if recurrences:
        lines.append(
            f"recurrences  {len(recurrences)}, highest severity {view.highest_severity} "
            "(signals of this stream and detector while the alert was unresolved):"
        )
        lines += [_recurrence_line(recurrence) for recurrence in recurrences]
    typer.echo("\n".join(lines))


@alerts_app.command("ack")
def acknowledge(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    note: Annotated[str, typer.Option("--note", help="what you will do about it")],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    url: UrlOption = None,
) -> None:
    """Acknowledge an open alert: you own it now."""
    _transition(alert_id, "acknowledge", by, note, url)


@alerts_app.command("resolve")
def resolve(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    resolution: Annotated[
        str, typer.Option("--resolution", help="root cause and fix, or why it was a false alarm")
    ],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    url: UrlOption = None,
) -> None:
    """Resolve an acknowledged alert, saying why."""
    _transition(alert_id, "resolve", by, resolution, url)


def _transition(alert_id: str, action: str, by: str | None, why: str, url: str | None) -> None:
    from postmarket.evidence.lifecycle import IllegalTransition
    from postmarket.evidence.store import EvidenceError

    with _open(url) as store:
        try:
            if action == "acknowledge":
                view = store.acknowledge_alert(alert_id, by=_actor(by), note=why)
            else:
                view = store.resolve_alert(alert_id, by=_actor(by), resolution=why)
        except (EvidenceError, IllegalTransition) as error:
            raise _fail(str(error)) from None
    typer.echo(f"alert {view.alert.alert_id} is {view.status.value}")


@alerts_app.command("rebaseline")
def rebaseline(
    alert_id: Annotated[str, typer.Argument(help=f"the acknowledged drift alert: {ALERT_ID_HELP}")],
    why: Annotated[
        str,
        typer.Option(
            "--why", help="what the investigation found and accepted, e.g. 'new scanner validated'"
        ),
    ],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Accept an investigated drift: the alert is resolved and the stream's next predictions
    become its new reference.

    Only for an acknowledged drift alert (score_drift, model_drift, kvp_band_drift or
    another acquisition drift). The decision goes to pms.rebaselines.v1, where the workers
    rebuild the stream's score and acquisition references from as many of its next
    predictions as formed its first reference; then it is recorded in the evidence store
    with an audit entry. The claims are never re-baselined: the CUSUMs, claims tests and
    label-free estimates keep testing them. If recording fails after publishing, run the
    command again: it publishes the same decision, which the workers skip.
    """
    from postmarket.config import Settings
    from postmarket.contracts.events import utc_now
    from postmarket.evidence.lifecycle import AlertAction, IllegalTransition, next_status
    from postmarket.evidence.rebaseline import (
        RebaselineRefused,
        publish_rebaseline,
        rebaseline_decision,
    )
    from postmarket.evidence.store import NotFound

    with _open(url) as store:
        try:
            view = store.alert(alert_id)
            decision = rebaseline_decision(view, _actor(by), why, utc_now())
        except (NotFound, RebaselineRefused) as error:
            raise _fail(str(error)) from None
        try:
            next_status(view.status, AlertAction.RESOLVE)  # an open alert has no owner yet
        except IllegalTransition as error:
            raise _fail(f"re-baselining resolves alert {decision.alert_id}; {error}") from None
        settings = Settings()
        target = bootstrap or settings.kafka_bootstrap
        try:
            publish_rebaseline(decision, target, settings.kafka_security())
        except Exception as error:  # kafka-python raises many kinds; nothing is stored yet
            raise _fail(
                f"publishing to {target} failed: {type(error).__name__}: {error}; "
                "nothing was recorded"
            ) from None
        try:
            store.record_rebaseline(decision)
        except Exception as error:  # published already: say how to finish, whatever failed
            raise _fail(
                f"published decision {decision.rebaseline_id} to pms.rebaselines.v1, but "
                f"recording it failed: {type(error).__name__}: {error}; run the command again "
                "(it publishes the same decision, which the workers skip, and records it)"
            ) from None
    stream, detector = decision.stream.as_key(), view.alert.detector
    typer.echo(
        f"re-baselined stream {stream} after its {detector} alert (decision "
        f"{decision.rebaseline_id} on pms.rebaselines.v1 at {target}); alert {decision.alert_id}"
        " is resolved.\nThe workers rebuild its score and acquisition references from its next "
        "predictions, as many as formed its first reference; the claims are tested as before."
    )


# --- audit -------------------------------------------------------------------------------


@audit_app.command("verify")
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="HASH",
            help="head hash kept from an earlier verify or report; exit 4 if the head differs",
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Recompute every entry's hash and link; exit 1 naming the first tampered entry.

    Print the head hash: keep it elsewhere and pass it back with --expect-head, since
    removing the newest entries leaves a shorter chain that is still consistent. Exit 3
    when there is no evidence store at --url (a command that only reads creates none).
    """
    from postmarket.evidence.audit import verify_chain

    with _open(url, read_only=True) as store:
        entries = store.audit_entries()
    verdict = verify_chain(entries)
    if verdict.problem is not None:
        raise _fail(f"audit trail broken at {verdict.problem}")
    if expect_head is not None and expect_head.strip().lower() != verdict.head_hash:
        kept = expect_head.strip().lower()
        raise _fail(
            f"audit trail head is {verdict.head_hash}, expected {kept} "
            f"({_where_kept_head_is(kept, [entry.entry_hash for entry in entries])})",
            EXIT_HEAD_DIFFERS,
        )
    typer.echo(
        f"audit trail intact: {verdict.entries} entries, head hash {verdict.head_hash} "
        "(keep this hash elsewhere: it also reveals removal of the newest entries)"
    )


def _where_kept_head_is(kept: str, chain: list[str]) -> str:
    """Whether the chain only grew since ``kept`` was the head, or lost or changed entries.

    >>> _where_kept_head_is("b", ["a", "b", "c"])
    'it is entry 2 of 3: 1 entry was added since'
    >>> _where_kept_head_is("x", ["a"])
    'it is not in the chain: entries were removed or rewritten since'
    """
    if kept not in chain:
        return "it is not in the chain: entries were removed or rewritten since"
    position = chain.index(kept) + 1
    added = len(chain) - position
    return f"it is entry {position} of {len(chain)}: {added} {_entries(added)} added since"


# --- the database itself -----------------------------------------------------------------


@evidence_app.command("upgrade")
def upgrade_database(url: UrlOption = None) -> None:
    """Create or migrate the evidence database to the newest schema."""
    with _open(url) as store:
        from postmarket.evidence.migrate import current_revision

        typer.echo(f"evidence store at revision {current_revision(store.engine)}")


@evidence_app.command("sink")
def sink(
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
    ] = None,
    group: Annotated[str, typer.Option(help="Kafka consumer group")] = "postmarket-evidence-sink",
    until_idle: Annotated[
        float | None,
        typer.Option(
            "--until-idle",
            metavar="SECONDS",
            help="stop once no record arrived for SECONDS (tests, demos); default: run on",
        ),
    ] = None,
    max_records: Annotated[int, typer.Option(help="records per poll and transaction")] = 500,
    url: UrlOption = None,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics/--no-metrics",
            help="serve /metrics (alerts by lifecycle status) at POSTMARKET_EVIDENCE_METRICS_HOST"
            ":POSTMARKET_EVIDENCE_METRICS_PORT",
        ),
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="/metrics port \\[default: POSTMARKET_EVIDENCE_METRICS_PORT]"
        ),
    ] = None,
    alerts_refresh: Annotated[
        float, typer.Option(min=1.0, metavar="SECONDS", help="how often alert counts are re-read")
    ] = 15.0,
    review_every: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="how often (after new records) to refresh weekly performance snapshots and "
            "compare each site with its fleet",
        ),
    ] = 60.0,
) -> None:
    """Write outcomes, predictions and alerts from Kafka into the evidence store.

    Long-running; SIGTERM or Ctrl-C stops it after the current batch. Offsets are
    committed only after the batch is in the database, and writes skip events already
    stored, so a crash or redelivery never loses or duplicates evidence. After new records
    it also reviews the store every --review-every seconds: weekly performance snapshots,
    and each site against its fleet (site-vs-fleet alerts). Its /metrics
    (loopback by default; TLS and basic auth as for the workers) counts the store's
    alerts by stream, detector, severity and lifecycle status.
    """
    import logging

    from kafka.errors import KafkaError

    from postmarket.config import Settings
    from postmarket.evidence.sink import EvidenceSink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    with _open(url) as store:
        running = EvidenceSink(
            store,
            target,
            group=group,
            max_records=max_records,
            security=settings.kafka_security(),
            review_every_s=review_every,
        )
        running.install_signal_handlers()
        typer.echo(f"evidence sink: group {group} at {target}", err=True)
        exporter = (
            _serve_alert_metrics(store, metrics_port, alerts_refresh, running.counts)
            if metrics
            else None
        )
        try:
            counts = running.run(until_idle_s=until_idle)
        except KafkaError as error:
            raise _fail(
                f"cannot consume from Kafka at {target}: {error}. Start the local stack "
                "(postmarket stack up) or give --bootstrap / POSTMARKET_KAFKA_BOOTSTRAP"
            ) from None
        finally:
            if exporter is not None:
                exporter()
    typer.echo(
        f"stored {counts.outcomes_new} outcomes, {counts.predictions_new} predictions, "
        f"{counts.alerts_new} alerts from {counts.records} records "
        f"({counts.duplicates} already stored, {counts.invalid} invalid); "
        f"{counts.snapshots} performance snapshots, {counts.fleet_alerts} site-vs-fleet alerts"
    )


def _serve_alert_metrics(
    store: EvidenceStore, port: int | None, refresh_s: float, counts: SinkCounts
) -> Callable[[], None]:
    """Serve the store's alert counts on /metrics; return what stops it.

    A sink started beside a local stack announces itself to the stack's Prometheus.
    """
    from prometheus_client import CollectorRegistry

    from postmarket.config import STACK_STATE_FILE, Settings
    from postmarket.evidence.metrics import EvidenceMetrics, PeriodicRefresh
    from postmarket.metrics_endpoint import MetricsEndpointError, serve_metrics

    settings = Settings()
    registry = CollectorRegistry()
    refresh = PeriodicRefresh(EvidenceMetrics(registry, counts), store, refresh_s)
    try:
        endpoint = settings.metrics_endpoint(
            settings.evidence_metrics_host,
            settings.evidence_metrics_port if port is None else port,
        )
        server = serve_metrics(registry, endpoint)
    except (MetricsEndpointError, OSError) as error:
        raise _fail(f"cannot serve /metrics: {error}") from None
    refresh.start()
    typer.echo(f"evidence sink metrics on {server.url}", err=True)
    if (settings.home / STACK_STATE_FILE).is_file():
        from postmarket.stack.prometheus import EVIDENCE_JOB, register_scrape_target

        register_scrape_target(settings.home, EVIDENCE_JOB, server.address)

    def stop() -> None:
        refresh.stop()
        server.close()

    return stop


@evidence_app.command("regulator-role")
def regulator_role(
    login: Annotated[
        str | None, typer.Option(help="also create this login role as a member")
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="file holding the login's password (never an argument)")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Create the read-only PostgreSQL role postmarket_regulator (SELECT only) and grant it
    every evidence table; optionally a regulator's login in it."""
    from postmarket.evidence.regulator import REGULATOR_ROLE, grant_regulator_read_access
    from postmarket.secrets import SecretFileError, read_secret_file

    try:
        secret = read_secret_file(password_file, "regulator password") if password_file else None
    except SecretFileError as error:
        raise _fail(str(error)) from None
    password = secret.decode() if secret is not None else None
    with _open(url) as store:
        try:
            grant_regulator_read_access(store.engine, login=login, password=password)
        except ValueError as error:
            raise _fail(str(error)) from None
    member = f"; login {login} is a member" if login else ""
    typer.echo(f"{REGULATOR_ROLE} may read the evidence store and change nothing{member}")


# --- the post-market report --------------------------------------------------------------

REPORT_FORMATS = ("html", "pdf", "json", "csv")


def report_command(
    device: Annotated[str, typer.Option("--device", help="device identifier")],
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option("--to", help="last day, YYYY-MM-DD (UTC), included")],
    out: Annotated[
        Path, typer.Option("--out", help="file to write; for csv, a directory (one file a table)")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="html, pdf (needs chromium), json (every table in one file) or csv (one file "
            "per table)",
        ),
    ] = "html",
    policy: Annotated[
        str, typer.Option(help="change-control preset that judges unregistered versions")
    ] = "nmpa-syzb",
    url: UrlOption = None,
) -> None:
    """Write the post-market report of a device: one self-contained HTML or PDF file, or
    its tables as JSON or CSV (with the same document id and content hash).

    Claims vs observed per version, per-site funnel plots and heterogeneity, performance per
    acquisition stratum, alerts and their resolution, version history with change control,
    and data provenance (prospective vs retrospective, follow-up completeness).
    `postmarket evidence contents` lists the devices and periods a store holds.
    """
    from postmarket.versions import PolicyError, preset

    if fmt not in REPORT_FORMATS:
        raise _fail(f"--format {fmt!r}: use {', '.join(REPORT_FORMATS)}")
    first, last = _day("--from", start), _day("--to", end)
    if last < first:
        raise _fail(f"--to {end} is before --from {start}")
    if fmt == "csv" and out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file; csv writes one file per table into a directory")
    if fmt != "csv" and out.is_dir():
        raise _fail(f"--out {out} is a directory; give a file, e.g. --out {out / f'report.{fmt}'}")
    try:
        active = preset(policy)
    except PolicyError as error:
        raise _fail(str(error)) from None
    # Imported once the arguments are known good: reports need scipy and matplotlib.
    from postmarket.evidence.report import build_report
    from postmarket.evidence.report_render import ReportError, write_report
    from postmarket.evidence.report_tables import document_id, export_csv, export_json
    from postmarket.evidence.store import NotFound

    with _open(url, read_only=True) as store:
        try:
            report = build_report(store, device, first, last, active)
        except NotFound as error:
            raise _fail(str(error)) from None
    try:
        if fmt == "csv":
            export_csv(report, out)
        elif fmt == "json":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(export_json(report), encoding="utf-8")
        else:
            write_report(report, out, fmt)
    except ReportError as error:
        raise _fail(str(error)) from None
    except OSError as error:
        raise _fail(f"cannot write {out}: {error.strerror or error}") from None
    typer.echo(
        f"wrote {out} ({fmt}): {document_id(report)}, {report.design.total} outcomes "
        f"({report.design}), {len(report.alerts)} alerts"
    )


@evidence_app.command("contents")
def contents(url: UrlOption = None) -> None:
    """List the devices, versions and periods the store holds: what to ask `report` for.

    Read-only. Per device: each version's registration and, per task, its sites, outcomes
    and the first and last day of their predictions (UTC), with the report command that
    covers them.
    """
    from postmarket.evidence.store_contents import contents_lines, store_contents

    with _open(url, read_only=True) as store:
        holdings = store_contents(store)
    for line in contents_lines(holdings):
        typer.echo(line)


__all__ = ["alerts_app", "audit_app", "evidence_app", "registry_app", "report_command"]
