"""Process plumbing shared by the local services: ports, detached starts, /proc checks, stops.

Every service of the local stack is a plain child process started in its own session, so it
outlives the ``postmarket stack up`` command and can be stopped as one process group. A
process counts as *ours* only if its command line names the stack home: a recorded pid that
was reused by an unrelated process is then never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
# The executables the stack starts; /proc scans look only at these, so a user's
# `tail -f <home>/logs/kafka.log` is never mistaken for a leftover service.
SERVICE_EXECUTABLES = frozenset({"java", "prometheus", "postgres"})


class StackError(Exception):
    """A local-stack operation failed for a reason worth one clear line to the operator."""


@dataclass(frozen=True)
class ProcessRecord:
    """What ``stack.json`` remembers about one started service."""

    name: str
    pid: int
    port: int
    started_at: str
    log: str

    def to_json(self) -> dict[str, Any]:
        """The record as stored under ``processes.<name>`` (the name is the key)."""
        data = asdict(self)
        del data["name"]
        return data

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> ProcessRecord:
        """Read a record written by :meth:`to_json`."""
        return cls(
            name=name,
            pid=int(data["pid"]),
            port=int(data["port"]),
            started_at=str(data["started_at"]),
            log=str(data["log"]),
        )


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP listener could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, exclude: Sequence[int] = ()) -> int:
    """A free loopback port: ``preferred`` if it is free, else one the kernel picks.

    Reusing the previous port keeps addresses stable across ``down``/``up``, so clients
    that cached them (and Prometheus targets) keep working.
    """
    if preferred and preferred not in exclude and port_is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if port not in exclude:
            return port


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> int:
    """Start ``argv`` in a new session with output appended to ``log_path``; return its pid.

    A new session makes the service the leader of its own process group (so one signal
    reaches its children) and detaches it from the terminal (so Ctrl-C on the CLI does
    not kill the stack).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv is built by this package, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            user=user,
            group=_primary_group(user) if user else None,
            extra_groups=[] if user else None,
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; fields after
    # the last ')' are plain.
    return raw[raw.rfind(")") + 2 :].split()


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    reap(pid)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def process_group(pid: int) -> int | None:
    """The process group id of ``pid`` (None if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[2]) if fields is not None else None


def cmdline(pid: int) -> list[str]:
    """The argument vector of ``pid`` (empty if it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def mentions_home(argv: Sequence[str], home: Path) -> bool:
    """Whether a command line refers to a path inside ``home`` (not merely a sibling)."""
    prefix = f"{home}/"
    return any(prefix in arg for arg in argv)


def is_ours(pid: int, home: Path) -> bool:
    """Whether ``pid`` is running and is a service of the stack in ``home``."""
    return is_running(pid) and mentions_home(cmdline(pid), home)


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a service's forked children included)."""
    return [pid for pid in _all_pids() if process_group(pid) == pgid and is_running(pid)]


def stray_services(home: Path) -> list[int]:
    """Live java/prometheus/postgres processes whose command line names ``home``."""
    found = []
    for pid in _all_pids():
        argv = cmdline(pid)
        if argv and Path(argv[0]).name in SERVICE_EXECUTABLES and mentions_home(argv, home):
            if is_running(pid):
                found.append(pid)
    return found


def stop_group(pgid: int, sig: signal.Signals, timeout: float) -> bool:
    """Signal process group ``pgid``, wait up to ``timeout`` s, then SIGKILL what is left.

    Returns True if the group ended on ``sig`` alone (a clean shutdown).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    if wait_for(lambda: not group_members(pgid), timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not group_members(pgid), 10.0)
    return False


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
