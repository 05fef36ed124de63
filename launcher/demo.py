"""``postmarket demo``: a simulated fleet through the whole pipeline, scored against its truth.

The demo scenario (six hospitals, two AI devices, seven injected changes over 60 simulated
days) runs through the real collector code into Kafka; a real Faust worker joins and
monitors it; the evidence sink stores what came out; each injected change is then scored
(:mod:`simulator.scoring`): detected or not, by which detector, how late, and which alerts
nothing explains. The post-market report of each device is written as HTML.

Every run starts from an empty stack in its own home (``<home>/demo``), so a second run
scores only itself. This is the composition root, so it may import every side.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Alert, Contract, DeadLetter, Outcome, Prediction
from postmarket.metrics import OUTCOMES
from postmarket.topic_reader import (
    TopicReadTimeout,
    read_to_end,
    valid_batched_events,
    valid_events,
)

if TYPE_CHECKING:
    from evidence.store import EvidenceStore
    from launcher.demo_gate import GateDemoResult
    from simulator.scenario import Scenario
    from simulator.scoring import Scorecard

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_SCENARIO = REPOSITORY / "scenarios" / "demo.toml"
FALSE_ALARM_BUDGET = 0.25
"""Expected false alarms of the whole fleet over the run: every test's threshold is set from
it (see :func:`demo_plan`)."""
DEMO_ACTOR = "postmarket-demo"
WORKER_PID_FILE = "demo-worker.pid"

EventT = TypeVar("EventT", bound=Contract)


class DemoError(RuntimeError):
    """A step of the demo did not complete; the message says which and why."""


def demo_home(settings: Settings) -> Path:
    """The demo's own stack home, inside the configured one."""
    return settings.home / "demo"


def demo_plan(
    truth: dict[str, Any],
    completeness: dict[str, float],
    budget: float = FALSE_ALARM_BUDGET,
) -> dict[str, Any]:
    """The surveillance plan of the simulated fleet, as settings: ``budget`` expected false
    alarms over the run, shared by every test of its streams, each stream planned at the
    fleet's average volume and at its device's planned follow-up ``completeness`` (device id
    -> share of cases that reach truth), see :mod:`streams.false_alarm_budget`.

    The run is a few weeks. The charts spend their budget in proportion to time, but each
    claims test may spend its whole year's alpha in the run (it restarts only after a year),
    so the budget a year is set for the run to expect ``budget`` with both counted. The
    pooled per-version stage's tests (a chart and a claims test per metric, per device,
    version and task) share it with the streams' (:mod:`streams.false_alarm_budget`).
    """
    from streams.false_alarm_budget import POOLED_TESTS_PER_GROUP
    from streams.monitor_policy import CHARTED_METRICS, TESTS_PER_STREAM

    years = int(truth["days"]) / 365
    streams = truth["streams"]
    predictions = sum(int(stream["cases"]) for stream in streams)
    followed = sum(
        int(stream["cases"]) * completeness[str(stream["stream_key"]).split("|")[0]]
        for stream in streams
    )
    groups = len(pooled_groups(streams))
    claims_tests = len(CHARTED_METRICS) * (len(streams) + groups)
    tests = TESTS_PER_STREAM * len(streams) + POOLED_TESTS_PER_GROUP * groups
    per_year = budget * tests / ((tests - claims_tests) * years + claims_tests)
    return {
        "fleet_false_alarms_per_year": per_year,
        "fleet_streams": len(streams),
        "fleet_pooled_groups": groups,
        "stream_predictions_per_year": predictions / len(streams) / years,
        "followup_completeness": followed / predictions,
    }


def pooled_groups(streams: list[dict[str, Any]]) -> set[str]:
    """The (device, version, task) groups of the run's streams: the pooled stage's."""
    groups = set()
    for stream in streams:
        device, version, _site, task = str(stream["stream_key"]).split("|")
        groups.add(f"{device}|{version}|{task}")
    return groups


# --- a clean stack for every run --------------------------------------------------------------


def _our_worker(pid: int, home: Path) -> bool:
    """Whether ``pid`` is a ``postmarket worker`` started for ``home`` (never anyone else's)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"worker" in command and f"POSTMARKET_HOME={home}".encode() in environment


def stop_kept_worker(home: Path, timeout_s: float = 30.0) -> None:
    """Stop the worker an earlier ``demo --keep-running`` left running, if it still is."""
    pid_file = home / WORKER_PID_FILE
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if _our_worker(pid, home):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _our_worker(pid, home) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _our_worker(pid, home):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def reset_demo_home(home: Path) -> None:
    """Remove the previous run's broker data, metrics, evidence and reports (keeps caches)."""
    for name in ("kafka", "prometheus", "logs", "reports", "gate"):
        shutil.rmtree(home / name, ignore_errors=True)
    for name in ("evidence.db", "ground-truth.json"):
        (home / name).unlink(missing_ok=True)


# --- reading what the pipeline emitted --------------------------------------------------------


def read_events(settings: Settings, topic: str, contract: type[EventT]) -> list[EventT]:
    """Every valid ``contract`` event on ``topic`` written before this call."""
    try:
        return valid_events(read_to_end(settings.kafka_bootstrap, topic, timeout_s=120.0), contract)
    except TopicReadTimeout as error:
        raise DemoError(str(error)) from None


def read_predictions(settings: Settings) -> list[Prediction]:
    """Every valid prediction the collectors sent: in signed batches (v2) or one per
    record (v1)."""
    try:
        batches = read_to_end(settings.kafka_bootstrap, topics.INPUTS, timeout_s=120.0)
        batched = valid_batched_events(batches, Prediction)
    except TopicReadTimeout as error:
        raise DemoError(str(error)) from None
    return batched + read_events(settings, topics.PREDICTIONS, Prediction)


def consumer_lag(settings: Settings, group: str, topic_names: Sequence[str]) -> int:
    """Records written to ``topic_names`` that ``group`` has not committed yet."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topic_names
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets(group).get(group, {})
        return sum(
            max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in ends.items()
        )
    finally:
        admin.close()
        consumer.close()


def wait_until_caught_up(
    settings: Settings,
    timeout_s: float,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Wait until the worker committed every input record, then everything it re-keyed.

    Stage by stage, because each stage's output is the next one's input: only once the
    v1 ingress (and the re-baselining decisions' forwarder) has caught up is the join's end
    final (v1 records re-keyed by site beside the signed batches); the join applies each
    event to its site's streams itself, and sends the tallies the pooled stage reads.
    """
    group = settings.worker_id
    stages = (
        [topics.PREDICTIONS, topics.FOLLOWUPS, topics.REBASELINES],
        [topics.INPUTS, f"{group}-inputs-by-site"],
        [topics.VERSION_TALLIES],  # the pooled stage, on what the join sent
    )
    deadline = time.monotonic() + timeout_s
    for stage in stages:
        lag = consumer_lag(settings, group, stage)
        most = max(lag, 1)
        while lag > 0:
            if time.monotonic() > deadline:
                raise DemoError(f"the worker is still {lag} records behind after {timeout_s:.0f} s")
            if progress is not None:
                progress(most - lag, most)
            time.sleep(1.0)
            lag = consumer_lag(settings, group, stage)
            most = max(most, lag)
        if progress is not None:
            progress(most, most)


def query_prometheus(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; the result vector (empty when nothing matches yet)."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - configured URL
        body = json.load(response)
    if body.get("status") != "success":
        raise DemoError(f"Prometheus refused {promql!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scraped_total(prometheus_url: str, metric: str, at_least: float, timeout_s: float) -> float:
    """``sum(metric)`` once Prometheus has scraped at least ``at_least`` (0.0 if it never did)."""
    deadline = time.monotonic() + timeout_s
    value = 0.0
    while time.monotonic() < deadline:
        try:
            result = query_prometheus(prometheus_url, f"sum({metric})")
        except OSError:
            result = []
        value = float(result[0]["value"][1]) if result else 0.0
        if value >= at_least:
            break
        time.sleep(1.0)
    return value


# --- the evidence store and the reports ------------------------------------------------------


def register_fleet(store: EvidenceStore, scenario: Scenario, actor: str = DEMO_ACTOR) -> None:
    """Put the scenario's devices, registered versions, claims and sites in the store."""
    from simulator.ground_truth import registry_entries

    for device in scenario.devices:
        store.add_device(device.id, tasks=[device.task], actor=actor)
    for entry in registry_entries(scenario):
        store.add_version(
            entry.device_id,
            entry.device_version,
            status=entry.registration_status,
            registered_on=entry.updated_at.date(),
            actor=actor,
        )
        for claim in entry.claims:
            store.add_claim(entry.device_id, entry.device_version, claim, actor=actor)
    for site in scenario.sites:
        store.add_site(site.id, name=site.institution, actor=actor)


def record_sightings(store: EvidenceStore, predictions: Sequence[Prediction]) -> None:
    """The first case of every (device, version, site, task) seen, for the version history."""
    first: dict[str, Prediction] = {}
    for prediction in predictions:
        key = prediction.stream.as_key()
        if key not in first or prediction.event_time < first[key].event_time:
            first[key] = prediction
    for prediction in first.values():
        store.record_sighting(prediction.stream, prediction.event_time, actor=DEMO_ACTOR)


def report_window(scenario: Scenario) -> tuple[date, date]:
    """First and last day of the run, including retrospective uploads of earlier days."""
    earliest = min([0, *(getattr(i, "from_day", 0) for i in scenario.injections)])
    start = scenario.start.date()
    return start + timedelta(days=earliest), start + timedelta(days=scenario.days - 1)


def write_reports(store: EvidenceStore, scenario: Scenario, directory: Path) -> dict[str, Path]:
    """The HTML post-market report of every device of the scenario."""
    from evidence.report import build_report
    from evidence.report_render import write_report
    from postmarket.versions import preset

    first, last = report_window(scenario)
    written = {}
    for device in scenario.devices:
        out = directory / f"{device.id}-report.html"
        write_report(build_report(store, device.id, first, last, preset("nmpa-syzb")), out, "html")
        written[device.id] = out
    return written


# --- the run ----------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What the demo ran and found, and where to look next."""

    scorecard: Scorecard
    scenario: str
    records: int
    predictions: int
    outcomes_stored: int
    alerts_stored: int
    streams: int
    ground_truth: Path
    reports: dict[str, Path]
    evidence_url: str
    metrics_url: str
    prometheus_url: str
    prometheus_outcomes: float
    logs: Path
    seconds: dict[str, float] = field(default_factory=dict)
    kept_running: bool = False
    pooled_groups: int = 0
    """(device, version, task) groups the pooled stage tested, sharing the budget."""
    gate: GateDemoResult | None = None
    """The standard test database gate on two candidate versions (None: the scenario has
    no device to gate)."""


class Steps:
    """A rich progress display with one line per step of the demo."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.seconds: dict[str, float] = {}
        self._began: dict[TaskID, float] = {}

    def begin(self, description: str, total: float | None = None, note: str = "") -> TaskID:
        task = self.progress.add_task(description, total=total, note=note)
        self._began[task] = time.monotonic()
        return task

    def update(self, task: TaskID, completed: float, total: float, note: str = "") -> None:
        self.progress.update(task, completed=completed, total=total, note=note)

    def finish(self, task: TaskID, name: str, note: str = "") -> None:
        total = self.progress.tasks[task].total or 1
        self.progress.update(task, completed=total, total=total, note=note)
        self.seconds[name] = time.monotonic() - self._began[task]

    def __enter__(self) -> Steps:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def run_demo(
    settings: Settings,
    console: Console,
    scenario_path: Path = DEMO_SCENARIO,
    timeout_s: float = 600.0,
    keep_worker: bool = False,
) -> DemoResult:
    """Run the scenario through a fresh worker on the running stack ``settings`` points at."""
    from evidence.sink import EvidenceSink
    from evidence.store import EvidenceStore
    from simulator.collector_path import kafka_connector
    from simulator.fleet_records import fleet_records
    from simulator.ground_truth import ground_truth
    from simulator.run import run_simulation
    from simulator.scenario import load_scenario
    from simulator.scoring import PipelineOutput, fleet_facts, score_run

    scenario = load_scenario(scenario_path)
    records = fleet_records(scenario)
    truth = ground_truth(scenario, records)
    facts = fleet_facts(records)
    completeness = {device.id: device.ground_truth.completeness for device in scenario.devices}
    settings = settings.model_copy(update=demo_plan(truth, completeness))
    home = settings.home
    ground_truth_path = home / "ground-truth.json"
    worker = LocalWorker(settings, home / "logs" / "worker.log")

    with Steps(console) as steps:
        step = steps.begin("stream worker (Faust)", 1, "joining its consumer group")
        worker.start(min(timeout_s, 180.0))
        (home / WORKER_PID_FILE).write_text(str(worker.pid))
        steps.finish(step, "worker", f"ready, metrics at {worker.metrics_url}")
        try:
            step = steps.begin("collectors -> Kafka", len(records), "simulated day 0")

            def simulated(done: int, total: int, day: int) -> None:
                steps.update(step, done, total, f"simulated day {day} of {scenario.days}")

            summary = run_simulation(
                scenario,
                kafka_connector(settings.kafka_bootstrap),
                ground_truth_path,
                progress=simulated,
            )
            steps.finish(step, "simulation", f"{summary.sent} records sent")

            step = steps.begin("worker catching up", None, "consumer lag")

            def caught_up(done: int, total: int) -> None:
                steps.update(step, done, total, f"{total - done} records behind")

            wait_until_caught_up(settings, timeout_s, caught_up)
            steps.finish(step, "catch-up", "lag 0")

            step = steps.begin("evidence store", None, settings.evidence_database_url)
            # The burst's malformed records are expected; the workers dead-letter them.
            logging.getLogger("evidence.sink").setLevel(logging.ERROR)
            store = EvidenceStore(settings.evidence_database_url)
            try:
                register_fleet(store, scenario)
                sink = EvidenceSink(store, settings.kafka_bootstrap)
                counts = sink.run(
                    until_idle_s=2.0,
                    on_batch=lambda c: steps.update(step, c.records, c.records, "sinking"),
                )
                alerts = read_events(settings, topics.ALERTS, Alert)
                dead_letters = read_events(settings, topics.DEADLETTER, DeadLetter)
                outcomes = read_events(settings, topics.OUTCOMES, Outcome)
                predictions = read_predictions(settings)
                record_sightings(store, predictions)
                steps.finish(
                    step,
                    "evidence",
                    f"{counts.outcomes_new} outcomes, {counts.alerts_new} alerts stored",
                )
                gate = gate_step(steps, scenario, settings.evidence_database_url, home / "gate")
                step = steps.begin("post-market reports", len(scenario.devices), "HTML")
                reports = write_reports(store, scenario, home / "reports")
                steps.finish(step, "reports", f"{len(reports)} written")
            finally:
                store.close()
            step = steps.begin("Prometheus scrape", None, settings.prometheus_url)
            scraped = scraped_total(
                settings.prometheus_url, f"{OUTCOMES}_total", counts.outcomes_new, 20.0
            )
            steps.finish(step, "prometheus", f"{scraped:g} outcomes scraped")
        finally:
            if not keep_worker:
                worker.stop()
                (home / WORKER_PID_FILE).unlink(missing_ok=True)

    output = PipelineOutput(alerts, dead_letters, predictions, outcomes)
    scorecard = score_run(truth, facts, output)
    return DemoResult(
        scorecard=scorecard,
        scenario=scenario.name,
        records=summary.sent,
        predictions=summary.predictions,
        outcomes_stored=counts.outcomes_new,
        alerts_stored=counts.alerts_new,
        streams=settings.fleet_streams,
        pooled_groups=settings.fleet_pooled_groups,
        ground_truth=ground_truth_path,
        reports=reports,
        evidence_url=settings.evidence_database_url,
        metrics_url=worker.metrics_url,
        prometheus_url=settings.prometheus_url,
        prometheus_outcomes=scraped,
        logs=home / "logs",
        seconds=steps.seconds,
        kept_running=keep_worker,
        gate=gate,
    )


def gate_step(
    steps: Steps, scenario: Scenario, evidence_url: str, directory: Path
) -> GateDemoResult | None:
    """The standard test database gate on two candidates of the scenario's lung-nodule
    device (:mod:`launcher.demo_gate`), before the reports so that they show it."""
    from launcher.demo_gate import GATE_DEVICE, GateDemoError, run_gate_demo

    if not any(device.id == GATE_DEVICE for device in scenario.devices):
        return None
    step = steps.begin("test database gate", None, f"{GATE_DEVICE} candidates")
    console = steps.progress.console
    following = getattr(console, "_file", None)
    # The gate's commands print into a capture that replaces sys.stdout for a moment; the
    # progress display, which writes to whatever sys.stdout is, stays on the terminal.
    console.file = console.file
    try:
        gate = run_gate_demo(evidence_url, directory)
    except GateDemoError as error:
        raise DemoError(f"the gate demo: {error}") from None
    finally:
        console._file = following
    verdicts = ", ".join(
        f"{o.candidate.version} {'passed' if o.passed else 'failed'}" for o in gate.candidates
    )
    steps.finish(step, "gate", verdicts)
    return gate


def demo_on_fresh_stack(
    console: Console,
    scenario_path: Path = DEMO_SCENARIO,
    keep_running: bool = False,
    timeout_s: float = 600.0,
) -> DemoResult:
    """The whole demo: clear the last run, start the stack, run, and stop it unless kept."""
    from launcher.stack import manager
    from launcher.stack.cli import RichProgress

    home = demo_home(Settings())
    with console.status("clearing the previous demo run") as status:
        stop_kept_worker(home)
        manager.down(Settings(home=home), progress=RichProgress(status))
        reset_demo_home(home)
    try:
        with console.status("starting the local stack") as status:
            stack = manager.up(Settings(home=home), progress=RichProgress(status))
        return run_demo(stack.settings, console, scenario_path, timeout_s, keep_running)
    finally:
        if keep_running:
            pid_file = home / WORKER_PID_FILE
            worker = pid_file.read_text() if pid_file.exists() else None
            stop = f"[bold]POSTMARKET_HOME={home} postmarket stack down[/]"
            console.print(
                "the stack keeps running"
                + (f", and the worker (pid {worker})" if worker else "")
                + "; the next [bold]postmarket demo[/] stops them, or "
                + (f"[bold]kill {worker}[/] and " if worker else "")
                + stop,
                highlight=False,
            )
        else:
            with console.status("stopping the local stack") as status:
                manager.down(Settings(home=home), progress=RichProgress(status))
