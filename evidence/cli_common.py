"""What every evidence command shares: the --url and --actor options (and the other options
and arguments more than one command takes), opening the store, exit codes, and the one-line
refusal that replaces a traceback.

Only typer is imported here; SQLAlchemy and the store are imported when a command opens the
store, so ``postmarket`` keeps working in a collector install that has no SQLAlchemy.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

if TYPE_CHECKING:
    from sqlalchemy import URL

    from evidence.store import EvidenceStore
    from postmarket.versions import ChangeControlPolicy

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

DeviceArgument = Annotated[str, typer.Argument(help="device identifier")]
"""The device a registry command is about (``add-device`` explains the identifier more)."""
VersionArgument = Annotated[str, typer.Argument(help="version S.Y.Z.B")]
"""The version a registry command is about."""
ClaimTaskArgument = Annotated[str, typer.Argument(help="the task the claim is for")]
"""The task of a claim (add-claim, amend-claim, withdraw-claim)."""

DeviceOption = Annotated[str, typer.Option("--device", help="the device, as in the registry")]
"""The device a report, PSUR, gate run or trend plan is about."""
PolicyOption = Annotated[
    str, typer.Option("--policy", help="change-control preset that judges unregistered versions")
]
"""The preset (:func:`change_control_policy`) a report or the registry list judges by."""
OutOption = Annotated[
    Path, typer.Option("--out", help="file to write; for csv, a directory (one file a table)")
]
"""Where a document is written (report, psur)."""
DocumentFormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="html, pdf (needs chromium), json (every table in one file) or csv (one file "
        "per table)",
    ),
]
"""The form of a written document (report, psur); the command checks the value."""
TableFormatOption = Annotated[str, typer.Option("--format", help="table, json or csv")]
"""The form of a result printed on stdout (testdb run, testdb verdict)."""


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
def open_store(url: str | None, *, read_only: bool = False) -> Iterator[EvidenceStore]:
    """The evidence store, or one line saying why it cannot be used (never a traceback).

    A command that writes creates a SQLite store (and its directory) and migrates it; one
    that only reads opens an existing store read-only, unmigrated, and refuses a missing
    one, so a mistyped path is an error rather than an empty, "intact" store.
    """
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from evidence.store import EvidenceStore

    if url is None:
        from postmarket.config import Settings

        url = Settings().evidence_database_url
    target = store_url(url)
    try:
        parsed = make_url(target)
    except ArgumentError:
        raise unavailable(
            f"{url!r} is not a database URL: write sqlite:///path/evidence.db, a file path, "
            "or postgresql+psycopg://user@host/database"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    file = sqlite_file(parsed)
    if file is not None and file.is_dir():
        raise unavailable(f"{file} is a directory; give the store's file, e.g. {file}/evidence.db")
    if read_only:
        if file is not None and not file.is_file():
            raise unavailable(
                f"no evidence store at {file}: point --url / POSTMARKET_EVIDENCE_URL at one, "
                "or create it with `postmarket evidence upgrade` (reading never creates one)"
            )
        parsed = read_only_url(parsed, file)
    elif file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise unavailable(f"cannot create {file.parent}: {error.strerror}") from None
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
            raise fail(f"the evidence store {shown} refused: {first_line(error)}") from None


def _cannot_open(shown: str, error: Exception) -> typer.Exit:
    return unavailable(
        f"cannot open the evidence store {shown}: {first_line(error)}. Start the local "
        "stack (postmarket stack up) or point --url / POSTMARKET_EVIDENCE_URL at a store"
    )


def _check_evidence_schema(store: EvidenceStore, shown: str) -> None:
    """Refuse a database that was never made an evidence store (reads would fail obscurely)."""
    from sqlalchemy import inspect

    with store.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            raise unavailable(
                f"{shown} is not an evidence store (no schema); create one with "
                "`postmarket evidence upgrade --url ...`"
            )


def first_line(error: Exception) -> str:
    """The driver's own message, without SQLAlchemy's statement and background link."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def parse_day(option: str, text: str) -> date:
    """The calendar day ``text`` names, or one line telling a typo from an impossible day."""
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise fail(f"{option} {text}: no such date ({error})") from None
        raise fail(f"{option} {text!r} is not a date: write YYYY-MM-DD") from None


def change_control_policy(name: str) -> ChangeControlPolicy:
    """The change-control preset ``name`` (``--policy``), or one line naming the presets."""
    from postmarket.versions import PolicyError, preset

    try:
        return preset(name)
    except PolicyError as error:
        raise fail(str(error)) from None


def actor_or_login(actor: str | None) -> str:
    """Who makes a change: ``--actor`` as given, else the login name."""
    return actor or getpass.getuser()


def fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise (``raise fail(...) from None``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def unavailable(message: str) -> typer.Exit:
    return fail(message, EXIT_STORE_UNAVAILABLE)


@contextmanager
def refused(*errors: type[Exception]) -> Iterator[None]:
    """Any of ``errors`` raised inside becomes its message on one line and exit 1."""
    try:
        yield
    except errors as error:
        raise fail(str(error)) from None
