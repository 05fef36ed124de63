"""Where the full worker's time goes on signed batches: a sampling profile of the worker
process (py-spy, in .venv only: ``uv pip install py-spy``) while it reads pre-filled
batches, grouped by what the frames belong to.

Not a benchmark (``bench/run.py`` runs ``bench_*.py`` only): a driver built from
:mod:`bench_pipeline`'s pieces. A local stack in a temporary home, the same events as
bench_pipeline's, then runs alternating between a worker with py-spy attached from its
first consumed event to its last outcome produced, and, with ``--plain``, one without
(the events/s py-spy costs). Writes the collapsed stacks of each profiled run and prints
the share of samples per group. Each run also reports the worker's garbage collections
while it worked (per generation: how many per 10,000 events, seconds, the longest pause)
and, after its last outcome, what one full collection of everything it kept pauses it
(``--variant NAME:PMS_GC_CENSUS=1`` adds what the young collections traversed).

``--timers`` times the worker's own calls instead (:data:`TIMED_CALLS`, each wrapped in the
worker's process): calls and microseconds per call and per event, nested calls included in
their callers, a coroutine's waits in its time (a flush's mostly waits for the producer: not
CPU). py-spy attributes a collection's pause to whatever line allocated, and
samples C extensions and system calls poorly; these are what the calls took, plus about
half a microsecond each for the timing itself.

    .venv/bin/python bench/profile_worker.py [--events N] [--runs N] [--plain] [--timers]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_pipeline as bp  # noqa: E402
from pipeline_stages import signed_batches  # noqa: E402
from quiet_machine import broker_pid, cpu_seconds, settle  # noqa: E402

from launcher.local_worker import LocalWorker  # noqa: E402
from launcher.stack import manager  # noqa: E402
from launcher.stack.processes import free_port  # noqa: E402
from postmarket import topics  # noqa: E402
from postmarket.config import Settings  # noqa: E402

GROUPS: list[tuple[str, tuple[str, ...]]] = [
    # First match wins, innermost frame first (see ``group_of``).
    ("gc", ("<gc>",)),
    ("metrics scrape", ("prometheus_client/exposition", "prometheus_client/registry")),
    ("json of changelog states", ("faust/utils/json", "faust/serializers", "json/encoder")),
    (
        "producing outputs",
        ("aiokafka/producer", "aiokafka/record", "faust/transport/drivers/aiokafka.py:send"),
    ),
    (
        "consumer/fetch",
        ("aiokafka/consumer", "aiokafka/conn", "aiokafka/client", "aiokafka/protocol", "kafka/"),
    ),
    # Decoding only: the join's outcome encoding and trusted builders are the join's.
    (
        "our decode/verify",
        (
            "postmarket/contracts/batches",
            "decode (postmarket/contracts",
            "decode_for_topic (postmarket/contracts",
            "postmarket/authenticity",
            "nacl/",
        ),
    ),
    (
        "monitors",
        (
            "streams/stream_monitor",
            "streams/live_streams",
            "streams/site_streams",
            "streams/stream_state",
            "streams/pooled",
            "streams/alerting",
            "detectors/",
            "streams/stream_gauges",
        ),
    ),
    (
        "join",
        (
            "streams/agents/join",
            "streams/casefile",
            "streams/join_backlog",
            "streams/retention",
            "streams/truth",
            "streams/event_time",
            "streams/deadletter",
            "streams/authentication",
            "streams/routing",
        ),
    ),
    ("flush/acks (ours)", ("streams/held_acks", "streams/channels", "streams/transport")),
    ("prometheus metrics", ("prometheus_client",)),
    (
        "faust stream machinery",
        ("faust/", "mode/", "streams/agents/", "streams/app"),
    ),
    ("asyncio loop", ("asyncio/",)),
]


def group_of(stack: str) -> str:
    """The group of one collapsed stack (outermost frame first, ``;``-separated): the
    innermost frame that belongs to a group names it; idle frames (the selector's wait)
    are idle."""
    frames = stack.split(";")
    innermost = frames[-1]
    if "select (selectors.py" in innermost or "epoll" in innermost or "_run_once" in innermost:
        if any("select (selectors.py" in f for f in frames[-2:]):
            return "idle"
    for frame in reversed(frames):
        for name, needles in GROUPS:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def breakdown(collapsed: Path, main_thread_only: bool = True) -> dict[str, int]:
    """Samples per group; ``main_thread_only``: the event loop's thread (py-spy --threads
    puts the thread first in each stack)."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if main_thread_only and frames and "MainThread" not in frames[0]:
            counts["(other threads)"] += int(number)
            continue
        counts[group_of(stack)] += int(number)
    return dict(counts)


GC_STATS_SITE = """
import gc, json, os, threading, time
from collections import Counter
_file = os.environ.get("PMS_GC_STATS_FILE")
_census = os.environ.get("PMS_GC_CENSUS")
if os.environ.get("PMS_GC_DISABLE"):
    gc.disable()  # an experiment: what the collector costs the worker
if _file:
    _spent = [0.0, 0.0, 0.0]
    _count = [0, 0, 0]
    _started = [0.0]
    _log = []
    _young = []
    _sizes = []

    def _timing(phase, info):
        generation = info["generation"]
        if phase == "start":
            if _census and generation == 0 and _count[0] % 4 == 0:
                objects = gc.get_objects(0)
                refs = sum(len(gc.get_referents(o)) for o in objects)
                kinds = Counter(type(o).__name__ for o in objects).most_common(12)
                _young.append({"at": time.time(), "objects": len(objects), "refs": refs,
                               "kinds": kinds})
                del objects
            _started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - _started[0]
            _spent[generation] += pause
            _count[generation] += 1
            _log.append((time.time(), generation, pause, info["collected"]))

    gc.callbacks.append(_timing)

    def _write():
        while True:
            time.sleep(0.5)
            if os.path.exists(_file + ".collect"):  # the driver asks: what a full one costs
                os.remove(_file + ".collect")
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            stats = {"seconds": _spent, "collections": _count, "log": _log, "at": time.time()}
            if _census:
                _sizes.append((time.time(), [len(gc.get_objects(g)) for g in range(3)],
                               gc.get_freeze_count()))
                stats.update(young=_young, sizes=_sizes)
            with open(_file + ".tmp", "w") as out:
                json.dump(stats, out)
            os.replace(_file + ".tmp", _file)

    threading.Thread(target=_write, daemon=True).start()
"""
"""A ``sitecustomize`` for the worker (on its PYTHONPATH): each GC collection (when, which
generation, its pause, what it found), written twice a second to ``PMS_GC_STATS_FILE``;
touching that path plus ``.collect`` runs one full collection (unfrozen) and logs it.
``PMS_GC_CENSUS``: also what a quarter of the young collections found (objects, references,
types) and each generation's size twice a second; slow, for finding out, not timing."""

TIMED_CALLS = (
    "streams.agents.join:_join_batch",
    "streams.agents.join:decode_batch",
    "streams.agents.join:signer_of",
    "streams.agents.join:_join_elements",
    "streams.agents.join:_stage",
    "streams.agents.join:_case_file",
    "streams.agents.join:_believe_event_time",
    "streams.agents.join:stream_inputs",
    "streams.agents.join:apply_to_streams",
    "streams.agents.join:_keep",
    "streams.agents.join:encode_outcome",
    "streams.agents.join:_sweep_if_due",
    "streams.agents.join:flush_joined",
    "streams.agents.join:_take_joined",
    "streams.agents.join:_send_joined",
    "streams.casefile:CaseFile.add",
    "streams.casefile:CaseFile.copy",
    "streams.casefile:CaseFile.to_state",
    "streams.casefile:joined_outcome",
    "streams.live_streams:LiveStreams.apply_all",
    "streams.live_streams:LiveStreams.monitor",
    "streams.stream_monitor:StreamMonitor.observe",
    "streams.stream_monitor:StreamMonitor.observe_score",
    "streams.site_streams:send_states",
)
"""``module:name`` (a module attribute or a class's method) of the calls ``--timers`` times;
a name no longer there is listed as missing."""
TIMERS_SITE = """
import functools, inspect, json, os, sys, threading, time
_timers_file = os.environ.get("PMS_TIMERS_FILE")

def _timed(name, call, spent):
    def done(started):
        entry = spent.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - started
    if inspect.iscoroutinefunction(call):
        @functools.wraps(call)
        async def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                done(started)
    else:
        @functools.wraps(call)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                done(started)
    return timed

def _time_calls(targets, out):
    while "streams.agents.stream_metrics" not in sys.modules:  # the agents all imported
        time.sleep(0.01)
    spent, missing = {}, []
    for target in targets:
        module_name, _, path = target.partition(":")
        owner = sys.modules.get(module_name)
        *owners, name = path.split(".")
        for part in owners:
            owner = getattr(owner, part, None)
        call = getattr(owner, name, None)
        if call is None:
            missing.append(target)
            continue
        setattr(owner, name, _timed(path, call, spent))
    while True:
        with open(out + ".tmp", "w") as file:
            json.dump({"spent": spent, "missing": missing}, file)
        os.replace(out + ".tmp", out)
        time.sleep(0.5)

if _timers_file:
    _targets = json.loads(os.environ["PMS_TIMED_CALLS"])
    threading.Thread(target=_time_calls, args=(_targets, _timers_file), daemon=True).start()
"""
"""Appended to the ``sitecustomize`` under ``--timers``: wraps each of ``PMS_TIMED_CALLS``
once the agents are imported, and writes their calls and seconds to ``PMS_TIMERS_FILE``
twice a second."""


def print_timers(timers_file: Path, events: int) -> None:
    """The timed calls of one run, costliest first."""
    try:
        timed = json.loads(timers_file.read_text())
    except (OSError, ValueError):
        print("no timers written (the worker never imported its agents?)")
        return
    print(f"\n{'call':38s} {'calls':>9s} {'s':>8s} {'µs/event':>9s} {'µs/call':>9s}")
    for name, (calls, seconds) in sorted(timed["spent"].items(), key=lambda item: -item[1][1]):
        per_event, per_call = 1e6 * seconds / max(events, 1), 1e6 * seconds / max(calls, 1)
        print(f"{name:38s} {calls:9d} {seconds:8.3f} {per_event:9.2f} {per_call:9.2f}")
    for target in timed["missing"]:
        print(f"not found, not timed: {target}")


def gc_in_window(log: list[list[float]], start: float, end: float, events: int) -> dict[str, Any]:
    """Per generation, the collections logged between ``start`` and ``end`` (epoch s): how
    many per 10,000 events, seconds in all, the longest pause (ms)."""
    window = [entry for entry in log if start <= entry[0] <= end]
    summary: dict[str, Any] = {}
    for generation in range(3):
        pauses = [entry[2] for entry in window if entry[1] == generation]
        summary[f"gen{generation}"] = {
            "per_10k_events": round(1e4 * len(pauses) / max(events, 1), 2),
            "seconds": round(sum(pauses), 3),
            "longest_ms": round(1e3 * max(pauses, default=0.0), 1),
        }
    return summary


def full_collection_pause(stats_file: Path, timeout_s: float = 30.0) -> float | None:
    """Ask the worker's hook for one full collection and return its pause (s)."""
    before = len(gc_seconds(stats_file).get("log", []))
    Path(str(stats_file) + ".collect").touch()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        full = [e for e in gc_seconds(stats_file).get("log", [])[before:] if e[1] == 2]
        if full:
            return float(full[-1][2])
    return None


def gc_seconds(stats_file: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(stats_file.read_text()))
    except (OSError, ValueError):
        return {}


def profiled_run(
    settings: Settings,
    home: Path,
    cases: int,
    out: Path | None,
    env: dict[str, str],
    warm: tuple[int, int] = (0, 0),
) -> dict[str, float]:
    """A fresh worker on the batches; py-spy from its first event to its last outcome.
    ``warm``: (events, cases) it reads first, before the clock and py-spy start (as
    bench_pipeline's warm worker)."""
    warm_events, warm_cases = warm
    bp.start_at_end(settings.kafka_bootstrap, settings.worker_id, (topics.INPUTS, *bp.SETUP_TOPICS))
    outcomes_before = bp.end_offsets(settings.kafka_bootstrap, topics.OUTCOMES)
    broker = broker_pid(home)
    settle(broker)
    worker = LocalWorker(settings, home / "logs" / f"{settings.worker_id}.log", env)
    spy: subprocess.Popen[bytes] | None = None
    try:
        starting = threading.Thread(target=worker.start, kwargs={"timeout_s": 180.0}, daemon=True)
        starting.start()
        first: float | None = None
        first_epoch = read_at_first = 0.0
        gc_start: dict[str, Any] = {}
        cpu_start = cpu_end = broker_start = broker_end = 0.0
        deadline = time.monotonic() + 180 + bp.FULL_WORKER_CAP_S
        totals = bp.scrape(worker.metrics_url, [topics.INPUTS])
        while time.monotonic() < deadline:
            totals = bp.scrape(worker.metrics_url, [topics.INPUTS])
            now = time.perf_counter()
            if first is None and totals["joined"] > max(warm_events - 1, 0):
                first = now
                first_epoch, read_at_first = bp.clock_start(totals, warm_events)
                cpu_start, broker_start = cpu_seconds(worker.pid), cpu_seconds(broker)
                gc_start = (
                    gc_seconds(Path(env["PMS_GC_STATS_FILE"])) if "PMS_GC_STATS_FILE" in env else {}
                )
                if out is not None and worker.pid is not None:
                    spy = subprocess.Popen(  # noqa: S603 - py-spy of this venv
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(worker.pid),
                            "--rate",
                            "200",
                            "--idle",
                            "--threads",
                            "--format",
                            "raw",
                            "--output",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            # The outcome counter, not the streams' confusion gauges (set every 2 s: the
            # profile's idle share was mostly the wait for them).
            if first is not None and totals["emitted"] >= warm_cases + cases:
                cpu_end, broker_end = cpu_seconds(worker.pid), cpu_seconds(broker)
                break
            time.sleep(0.02 if first is None and not warm_events else bp.BUSY_POLL_S)
        # py-spy stops with the run: the full collection measured below would otherwise be
        # sampled too (1.1 s of the GIL held by it: a fifth of a run's samples, put on
        # whatever line the main thread was waiting at).
        stop_spy(spy)
        starting.join(timeout=180)
        ended = bp.last_outcome_at(settings.kafka_bootstrap, outcomes_before)
        elapsed = (ended or time.time()) - (first_epoch or time.time())
        window_end = time.time()
        window_start = window_end - elapsed
        stats_file = Path(env["PMS_GC_STATS_FILE"]) if "PMS_GC_STATS_FILE" in env else None
        gc_end = gc_seconds(stats_file) if stats_file is not None else {}
        # Warm: the events read after the clock started (see bench_pipeline.full_worker_rate).
        events = int(warm_events + 2 * cases - read_at_first) if warm_events else 2 * cases
        row: dict[str, Any] = {
            "events_per_s": events / max(elapsed, 1e-9),
            "elapsed_s": elapsed,
            "cpu_us_per_event": 1e6 * (cpu_end - cpu_start) / max(events, 1),
            # On 2 cores the broker's CPU is what the worker cannot have: its share of a core
            # below 1 is the time it waited for one.
            "broker_cpu_us_per_event": 1e6 * (broker_end - broker_start) / max(events, 1),
            "worker_core_share": (cpu_end - cpu_start) / max(elapsed, 1e-9),
            "gc_s": sum(gc_end.get("seconds", [0.0])) - sum(gc_start.get("seconds", [0.0])),
            "gc": gc_in_window(gc_end.get("log", []), window_start, window_end, events),
        }
        if stats_file is not None:
            row["full_collection_s"] = full_collection_pause(stats_file)
            row["gc_detail"] = gc_seconds(stats_file)
        return row
    finally:
        stop_spy(spy)
        worker.stop()


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """Have py-spy write its samples and exit (once)."""
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def variants_of(specs: list[str]) -> list[tuple[str, dict[str, str]]]:
    """``--variant NAME:KEY=VALUE,KEY=VALUE`` options as (name, environment); the current
    code alone without any.

    >>> variants_of(["base:PYTHONPATH=/wt", "gc:PMS_GC_DISABLE=1,X=2"])
    [('base', {'PYTHONPATH': '/wt'}), ('gc', {'PMS_GC_DISABLE': '1', 'X': '2'})]
    >>> variants_of([])
    [('current', {})]
    """
    return [
        (name, dict(pair.split("=", 1) for pair in pairs.split(",") if pair))
        for name, _, pairs in (spec.partition(":") for spec in specs)
    ] or [("current", {})]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="also a run without py-spy")
    parser.add_argument("--no-spy", action="store_true", help="no py-spy at all")
    parser.add_argument(
        "--timers", action="store_true", help="time the worker's own calls (no py-spy)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE,KEY=VALUE: environment of a worker variant, run alternating with "
        "the others (PYTHONPATH=DIR runs another checkout's code)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="each worker first reads bench_pipeline's warm-up (its streams past their "
        "start-up, 40,000 more case files), then the measured batches",
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "pms-profile")
    args = parser.parse_args()
    if args.warm and args.timers:
        parser.error("--timers counts from the worker's start: not with --warm")
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="pms-profile-", dir="/tmp"))
    home.chmod(0o755)
    # Workers run ``python -m postmarket`` here, which puts the current directory first on
    # sys.path: started from a checkout, every variant would run that checkout's code.
    os.chdir(home)
    results: list[dict[str, Any]] = []
    try:
        stack = manager.up(Settings(home=home))
        bootstrap = stack.settings.kafka_bootstrap
        cases = args.events // 2
        events = bp.case_events(cases, seed=1, prefix="tp")
        bp.prefill(bootstrap, [])  # the registry and the site keys
        warm = bp.warm_up_events() if args.warm else []
        if warm:
            bp.prefill_batches(bootstrap, signed_batches(warm, bp.SIGNING_KEYS))
        bp.prefill_batches(bootstrap, signed_batches(events, bp.SIGNING_KEYS))
        print(f"load average before: {os.getloadavg()}", flush=True)
        variants = variants_of(args.variant)
        for number in range(args.runs):
            for variant, env in variants:
                spying = not (args.no_spy or args.timers)
                for profiled in (True, False) if args.plain else (spying,):
                    run_env = dict(env)
                    site = home / "gc-site"
                    site.mkdir(exist_ok=True)
                    (site / "sitecustomize.py").write_text(GC_STATS_SITE + TIMERS_SITE)
                    timers_file = home / f"timers-{uuid.uuid4().hex[:8]}.json"
                    if args.timers:
                        run_env["PMS_TIMERS_FILE"] = str(timers_file)
                        run_env["PMS_TIMED_CALLS"] = json.dumps(TIMED_CALLS)
                    run_env["PYTHONPATH"] = os.pathsep.join(
                        [str(site), *([env["PYTHONPATH"]] if "PYTHONPATH" in env else [])]
                    )
                    run_env["PMS_GC_STATS_FILE"] = str(home / f"gc-{uuid.uuid4().hex[:8]}.json")
                    settings = stack.settings.model_copy(
                        update={
                            "worker_id": f"profile-{uuid.uuid4().hex[:8]}",
                            "worker_metrics_port": free_port(),
                        }
                    )
                    out = args.out / f"run{number}-{variant}.collapsed" if profiled else None
                    warm_up = (len(warm), len(warm) // 2)
                    rate = profiled_run(settings, home, cases, out, run_env, warm_up)
                    row: dict[str, Any] = {
                        "variant": variant,
                        "profiled": profiled,
                        **rate,
                        "load": os.getloadavg()[0],
                    }
                    if out is not None and out.exists():
                        row["groups"] = breakdown(out)
                    detail = args.out / f"gc-run{number}-{variant}.json"
                    detail.write_text(json.dumps(row.pop("gc_detail", {})))
                    results.append(row)
                    print(json.dumps(row), flush=True)
                    if args.timers:
                        print_timers(timers_file, 2 * cases)
    finally:
        manager.down(Settings(home=home))
        shutil.rmtree(home, ignore_errors=True)
    for row in results:
        groups = row.get("groups")
        if not groups:
            continue
        total = sum(groups.values())
        busy = total - groups.get("idle", 0) - groups.get("(other threads)", 0)
        us_per_event = 1e6 / row["events_per_s"]
        print(f"\n{row['events_per_s']:,.0f} events/s ({us_per_event:.0f} µs per event):")
        main_thread = total - groups.get("(other threads)", 0)
        for name, count in sorted(groups.items(), key=lambda item: -item[1]):
            share = count / main_thread if name != "(other threads)" else float("nan")
            print(f"  {name:28s} {count:6d}  {share:6.1%}  {share * us_per_event:6.0f} µs")
        print(f"  busy share of the loop: {busy / main_thread:.1%}")


if __name__ == "__main__":
    main()
