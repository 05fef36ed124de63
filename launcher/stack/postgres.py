"""PostgreSQL for the local stack (optional: ``stack up --postgres``), on 127.0.0.1 only.

The evidence store defaults to a SQLite file; this starts a throwaway PostgreSQL cluster
in ``<home>/postgres`` for those who want to test against the production database kind.
PostgreSQL refuses to run as root, so when we are root the cluster belongs to an
unprivileged system user (``postgres`` if it exists) and every server binary runs as it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from launcher.stack.processes import (
    LOOPBACK,
    ProcessRecord,
    StackError,
    is_running,
    spawn_detached,
    tail,
)

SUPERUSER = "postgres"
DATABASE = "postmarket"
FALLBACK_SYSTEM_USER = "postmarket-pg"
READY_TIMEOUT = 60.0
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class PostgresPaths:
    """Where the cluster keeps its data, socket and log inside the stack home."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.home / "logs" / "postgres.log"


def bin_dir() -> Path:
    """The newest installed PostgreSQL server binaries (Debian keeps them off PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise StackError("PostgreSQL server binaries not found; run: apt-get install -y postgresql")
    return Path(found).resolve().parent


def database_url(port: int, database: str = DATABASE) -> str:
    """The SQLAlchemy URL of the stack's database (trust auth, so no password)."""
    return f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{port}/{database}"


def render_hba() -> str:
    """``pg_hba.conf``: trust on the home's Unix socket and on 127.0.0.1, nothing else."""
    return (
        "# Written by launcher.stack.postgres: a local throwaway cluster.\n"
        "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
        "local   all       all                 trust\n"
        "host    all       all   127.0.0.1/32  trust\n"
    )


def server_argv(binaries: Path, paths: PostgresPaths, port: int) -> list[str]:
    """The postmaster command line: loopback TCP, socket inside the home, our port."""
    return [
        str(binaries / "postgres"),
        "-D",
        str(paths.data_dir),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={paths.socket_dir}",
    ]


def service_user() -> str | None:
    """The OS user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_SYSTEM_USER):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(  # noqa: S603 - fixed argv
        [
            useradd,
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_SYSTEM_USER,
        ],
        check=True,
        capture_output=True,
    )
    return FALLBACK_SYSTEM_USER


def _give_to(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run_as(argv: Sequence[str], user: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv is built here, no shell
        list(argv),
        user=user,
        group=pwd.getpwnam(user).pw_gid if user else None,
        extra_groups=[] if user else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def check_reachable(paths: PostgresPaths, user: str | None) -> None:
    """Fail clearly if the service user cannot reach the home (e.g. a 0700 parent dir)."""
    if user is None:
        return
    probe = _run_as(["/usr/bin/test", "-w", str(paths.root)], user, Path("/"))
    if probe.returncode != 0:
        raise StackError(
            f"PostgreSQL runs as user {user!r}, which cannot write {paths.root}; make its "
            "parent directories traversable (chmod o+x) or choose another POSTMARKET_HOME"
        )


def init_cluster(paths: PostgresPaths, user: str | None) -> bool:
    """Create the cluster once (initdb); returns False if it already existed."""
    if (paths.data_dir / "PG_VERSION").is_file():
        return False
    for directory in (paths.root, paths.data_dir, paths.socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (paths.root, paths.data_dir, paths.socket_dir):
        _give_to(directory, user)
    paths.data_dir.chmod(0o700)
    check_reachable(paths, user)
    initdb = [
        str(bin_dir() / "initdb"),
        "-D",
        str(paths.data_dir),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
    ]
    result = _run_as(initdb, user, paths.root)
    if result.returncode != 0:
        raise StackError(f"initdb failed: {(result.stdout + result.stderr).strip()[-2000:]}")
    hba = paths.data_dir / "pg_hba.conf"
    hba.write_text(render_hba())
    _give_to(hba, user)
    return True


def start(paths: PostgresPaths, port: int, user: str | None) -> ProcessRecord:
    """Start the postmaster detached (not yet ready)."""
    socket_path = paths.socket_dir / f".s.PGSQL.{port}"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise StackError(
            f"the PostgreSQL socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes; "
            "choose a shorter POSTMARKET_HOME"
        )
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached(server_argv(bin_dir(), paths, port), paths.log, cwd=paths.root, user=user)
    return ProcessRecord(
        name="postgres",
        pid=pid,
        port=port,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log=str(paths.log),
    )


def accepts_connections(port: int) -> bool:
    """Whether the server accepts connections on 127.0.0.1:port (``pg_isready``)."""
    argv = [str(bin_dir() / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-t", "2"]
    return subprocess.run(argv, check=False).returncode == 0  # noqa: S603


def wait_until_ready(
    record: ProcessRecord, paths: PostgresPaths, timeout: float = READY_TIMEOUT
) -> None:
    """Block until ``pg_isready`` succeeds; fail fast with the log if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(record.pid):
            raise StackError(
                f"PostgreSQL (pid {record.pid}) exited during startup; last lines of "
                f"{paths.log}:\n{tail(paths.log)}"
            )
        if accepts_connections(record.port):
            return
        time.sleep(0.3)
    raise StackError(
        f"PostgreSQL on port {record.port} not ready after {timeout:.0f} s; last lines of "
        f"{paths.log}:\n{tail(paths.log)}"
    )


def _psql(port: int, sql: str) -> str:
    argv = [
        str(bin_dir() / "psql"),
        "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
        "-h", LOOPBACK, "-p", str(port), "-U", SUPERUSER, "-d", "postgres", "-c", sql,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise StackError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def ensure_database(port: int, name: str = DATABASE) -> bool:
    """Create database ``name`` unless it exists; returns True if it was created."""
    if not name.isidentifier():
        raise ValueError(f"unsafe database name {name!r}")
    # name is a plain identifier (checked above), so quoting it inline is safe.
    exists = _psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
    if exists == "1":
        return False
    _psql(port, f'CREATE DATABASE "{name}"')
    return True
