"""Start each measured run on a quiet machine: what was just written is on disk, the broker idle.

On this 2-vCPU machine a run started right after a pre-fill shared the CPUs with the kernel
writing back the pre-fill's pages (100-190 MB dirty) and with the broker still busy: a worker
took a third more CPU an event. Measured with a warm worker, three pairs in one stack: 10,779
/ 9,714 / 12,136 events/s started at once against 12,061 / 10,608 / 14,893 after settling
(24-28 s). Every peer's run (the bare agent's too) starts this way, so their ratio compares
work, not what the machine was still doing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from launcher.stack import manager

SETTLE_CAP_S = 60.0
"""A run starts after this long even if the machine never went quiet (a shared machine)."""
QUIET_CPU_S = 0.05
"""The broker is idle once it used less than this much CPU time in a second."""
QUIET_UNWRITTEN_KB = 16 * 1024
"""The page cache is written back once less than this much is dirty or being written."""
LOOK_EVERY_S = 1.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far, all its threads (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def unwritten_kb(meminfo: str | None = None) -> int:
    """KB of the page cache not yet on disk (Dirty + Writeback of ``/proc/meminfo``).

    >>> unwritten_kb("MemFree: 10 kB\\nDirty:  300 kB\\nWriteback: 12 kB\\n")
    312
    """
    text = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
    sizes = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return sum(int(sizes.get(name, "0 kB").split()[0]) for name in ("Dirty", "Writeback"))


def broker_pid(home: Path) -> int | None:
    """The pid of the broker of the local stack in ``home``, if it runs."""
    record = manager.load_state(home).processes.get(manager.KAFKA)
    return None if record is None else record.pid


def settle(pid: int | None, cap_s: float = SETTLE_CAP_S) -> float:
    """Write the page cache back, then wait until process ``pid`` (the broker) used less
    than :data:`QUIET_CPU_S` in a second and little is dirty, at most ``cap_s``; the
    seconds waited."""
    started = time.monotonic()
    os.sync()
    used = cpu_seconds(pid)
    while time.monotonic() - started < cap_s:
        time.sleep(LOOK_EVERY_S)
        now = cpu_seconds(pid)
        if now - used < QUIET_CPU_S and unwritten_kb() < QUIET_UNWRITTEN_KB:
            break
        used = now
    return time.monotonic() - started
