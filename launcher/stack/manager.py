"""Start, inspect and stop the local stack (Kafka, Prometheus, optionally PostgreSQL).

The stack's memory is ``<home>/stack.json``: the addresses clients should use (read back by
:class:`postmarket.config.StackStateSource`), the processes we started, and the ports we
chose, which are reused on the next ``up`` so addresses stay stable. Only processes
recorded there *and* whose command line names the home are ever signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from launcher.stack import kafka, postgres, prometheus, security
from launcher.stack.processes import (
    ProcessRecord,
    StackError,
    free_port,
    group_members,
    is_ours,
    stop_group,
    stray_services,
)
from postmarket.config import STACK_STATE_FILE, Settings
from postmarket.kafka_security import KafkaSecurity
from postmarket.scrape_targets import WORKER_JOB, atomic_write_text
from postmarket.topic_admin import TopicAdminError, admin_client, ensure_topics
from postmarket.topics import pipeline_topics

KAFKA = "kafka"
PROMETHEUS = "prometheus"
POSTGRES = "postgres"
KAFKA_CONTROLLER = "kafka-controller"
KAFKA_INTERNAL = "kafka-internal"
SERVICE_ORDER = (KAFKA, PROMETHEUS, POSTGRES)
# PostgreSQL's SIGTERM is a "smart" shutdown that waits for clients to leave; SIGINT is
# the "fast" one that still shuts down cleanly.
STOP_SIGNALS = {KAFKA: signal.SIGTERM, PROMETHEUS: signal.SIGTERM, POSTGRES: signal.SIGINT}
# Kafka needs ~10 s to hand over leadership and flush; give it room before SIGKILL.
STOP_TIMEOUTS = {KAFKA: 45.0, PROMETHEUS: 20.0, POSTGRES: 30.0}
DEFAULT_TIMEOUT = 90.0


class Progress(Protocol):
    """Receives what ``up``/``down`` are doing, so a CLI can show a spinner per service."""

    def begin(self, service: str, action: str) -> None:
        """``service`` started a step that may take a while."""

    def done(self, service: str, summary: str) -> None:
        """``service`` finished; ``summary`` is one line for the operator."""


class SilentProgress:
    """A :class:`Progress` that shows nothing (library use, tests)."""

    def begin(self, service: str, action: str) -> None:
        """Ignore the step."""

    def done(self, service: str, summary: str) -> None:
        """Ignore the summary."""


@dataclass
class StackState:
    """The contents of ``<home>/stack.json``."""

    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    kafka_version: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    secure: bool = False
    """Kafka runs with SASL_SSL, mutual TLS inside, ACLs and quotas (``up --secure``)."""
    sites: list[str] = field(default_factory=list)
    """Site ids with a principal on the secure broker (names only, never passwords)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON document written to ``stack.json``."""
        return {
            "settings": dict(self.settings),
            "processes": {name: record.to_json() for name, record in self.processes.items()},
            "kafka_version": self.kafka_version,
            "ports": dict(self.ports),
            "secure": self.secure,
            "sites": list(self.sites),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        """Read a document written by :meth:`to_json` (unknown keys are ignored)."""
        return cls(
            settings={str(k): str(v) for k, v in (data.get("settings") or {}).items()},
            processes={
                name: ProcessRecord.from_json(name, record)
                for name, record in (data.get("processes") or {}).items()
            },
            kafka_version=data.get("kafka_version"),
            ports={str(k): int(v) for k, v in (data.get("ports") or {}).items()},
            secure=bool(data.get("secure", False)),
            sites=[str(site) for site in data.get("sites") or []],
        )


def state_file(home: Path) -> Path:
    """Where the stack state lives."""
    return home / STACK_STATE_FILE


def load_state(home: Path) -> StackState:
    """The recorded state, or an empty one if there is none (or it is unreadable)."""
    try:
        return StackState.from_json(json.loads(state_file(home).read_text()))
    except FileNotFoundError:
        return StackState()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StackError(f"{state_file(home)} is unreadable ({error}); fix or remove it") from error


def save_state(home: Path, state: StackState) -> None:
    """Write the state atomically (clients read it concurrently)."""
    atomic_write_text(state_file(home), json.dumps(state.to_json(), indent=2) + "\n")


@contextlib.contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """Serialise ``up`` and ``down`` on one home (two terminals, or a test and a CLI)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def client_settings(state: StackState, home: Path | None = None) -> dict[str, str]:
    """The addresses clients should use, derived from the running processes.

    On a secure stack local clients (worker, evidence sink) use the worker principal: the
    settings name its password *file* and the CA, never a password.
    """
    addresses: dict[str, str] = {}
    if KAFKA in state.processes:
        addresses["kafka_bootstrap"] = f"127.0.0.1:{state.processes[KAFKA].port}"
        if state.secure and home is not None:
            paths = security.SecurePaths(home)
            addresses.update(
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_mechanism="SCRAM-SHA-512",
                kafka_username=security.WORKER,
                kafka_password_file=str(paths.password_file(security.WORKER)),
                kafka_ca_file=str(paths.ca_cert),
            )
    if PROMETHEUS in state.processes:
        addresses["prometheus_url"] = prometheus.base_url(state.processes[PROMETHEUS].port)
    if POSTGRES in state.processes:
        addresses["evidence_url"] = postgres.database_url(state.processes[POSTGRES].port)
    return addresses


# --- up ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did, and the settings a client of this stack should use."""

    settings: Settings
    started: tuple[str, ...]
    already_running: tuple[str, ...]
    kafka_version: str
    cluster_id: str
    topics_created: tuple[str, ...]
    secure: bool = False
    principals: tuple[str, ...] = ()


def _running_records(state: StackState, home: Path) -> dict[str, ProcessRecord]:
    return {name: rec for name, rec in state.processes.items() if is_ours(rec.pid, home)}


def _refuse_strays(home: Path, running: dict[str, ProcessRecord]) -> None:
    """Refuse to start beside a service of this home that stack.json does not know about."""
    known = {pid for record in running.values() for pid in group_members(record.pid)}
    strays = sorted(set(stray_services(home)) - known)
    if strays:
        raise StackError(
            f"processes {strays} are using {home} but are not recorded in "
            f"{state_file(home)}; stop them before `stack up`"
        )


def admin_endpoint(home: Path, state: StackState) -> tuple[str, KafkaSecurity | None]:
    """Where and how the stack itself administers Kafka (the admin certificate if secure)."""
    if state.secure:
        internal = state.ports.get(KAFKA_INTERNAL)
        if internal is None:
            raise StackError(f"{state_file(home)} records a secure stack without its admin port")
        return f"127.0.0.1:{internal}", security.SecurePaths(home).admin_security()
    return f"127.0.0.1:{state.processes[KAFKA].port}", None


def _start_kafka(
    home: Path, state: StackState, timeout: float, progress: Progress
) -> ProcessRecord:
    pom = kafka.pom_path()
    version = kafka.kafka_version_from_pom(pom.read_text())
    paths = kafka.KafkaPaths(home)
    if not kafka.jar_cache_is_complete(paths.jar_cache(version)):
        progress.begin(KAFKA, f"fetching Kafka {version} jars with Maven (first run only)")
    jar_dir = kafka.resolve_jars(home, pom, version, home / "logs" / "maven.log")
    broker = free_port(state.ports.get(KAFKA))
    controller = free_port(state.ports.get(KAFKA_CONTROLLER), exclude=[broker])
    ports = kafka.KafkaPorts(broker=broker, controller=controller)
    chosen = {KAFKA: broker, KAFKA_CONTROLLER: controller}
    overrides: dict[str, str | int] = {}
    if state.secure:
        internal = free_port(state.ports.get(KAFKA_INTERNAL), exclude=[broker, controller])
        ports = kafka.KafkaPorts(broker=broker, controller=controller, internal=internal)
        chosen[KAFKA_INTERNAL] = internal
        secure_paths = security.SecurePaths(home)
        if not secure_paths.ca_cert.is_file():
            progress.begin(KAFKA, "creating the local CA and certificates (first run only)")
        security.ensure_certificates(secure_paths)
        overrides = security.server_settings(secure_paths, broker, internal, controller)
    kafka.write_config(paths, ports, overrides)
    progress.begin(KAFKA, "formatting storage")
    kafka.format_storage(paths, jar_dir)
    record = kafka.start(paths, ports, jar_dir)
    _remember(home, state, record, chosen)
    state.kafka_version = version
    progress.begin(KAFKA, f"waiting for the broker on {ports.bootstrap} (pid {record.pid})")
    bootstrap, admin_security = admin_endpoint(home, state)
    kafka.wait_until_ready(record, paths, timeout, bootstrap=bootstrap, security=admin_security)
    return record


def _start_prometheus(
    home: Path, state: StackState, timeout: float, progress: Progress
) -> ProcessRecord:
    paths = prometheus.PrometheusPaths(home)
    port = free_port(state.ports.get(PROMETHEUS))
    prometheus.write_config(
        paths,
        port,
        prometheus.alert_rule_files(kafka.deploy_dir()),
        # Workers and the sink of this home read the same settings: scrape them as served.
        prometheus.central_scrape_security(Settings(home=home)),
    )
    record = prometheus.start(paths, port)
    _remember(home, state, record, {PROMETHEUS: port})
    progress.begin(PROMETHEUS, f"waiting for /-/ready on port {port} (pid {record.pid})")
    prometheus.wait_until_ready(record, paths, timeout)
    return record


def _start_postgres(
    home: Path, state: StackState, timeout: float, progress: Progress
) -> ProcessRecord:
    paths = postgres.PostgresPaths(home)
    user = postgres.service_user()
    progress.begin(POSTGRES, "initialising the cluster (first run only)")
    postgres.init_cluster(paths, user)
    port = free_port(state.ports.get(POSTGRES))
    record = postgres.start(paths, port, user)
    _remember(home, state, record, {POSTGRES: port})
    progress.begin(POSTGRES, f"waiting for connections on port {port} (pid {record.pid})")
    postgres.wait_until_ready(record, paths, timeout)
    postgres.ensure_database(port)
    return record


def _remember(home: Path, state: StackState, record: ProcessRecord, ports: dict[str, int]) -> None:
    # Recorded before waiting for readiness, so a crash of `up` itself cannot leave an
    # unrecorded (and therefore never-stopped) service behind.
    state.processes[record.name] = record
    state.ports.update(ports)
    save_state(home, state)


_STARTERS = {KAFKA: _start_kafka, PROMETHEUS: _start_prometheus, POSTGRES: _start_postgres}


def up(
    settings: Settings,
    with_postgres: bool = False,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    secure: bool = False,
    sites: Sequence[str] = (),
    quota: security.SiteQuota | None = None,
) -> UpResult:
    """Start whatever part of the stack is not running, create the topics, record it all.

    Idempotent: services already running are reported in ``already_running`` and left
    alone. If a service fails to start, the services this call started are stopped again
    so a failed ``up`` leaves nothing half-running; their logs stay in ``<home>/logs``.

    ``secure`` runs Kafka with TLS, SCRAM principals (worker, auditor, one per site in
    ``sites``), ACLs and per-site ``quota`` (see :mod:`launcher.stack.security`).
    """
    progress = progress or SilentProgress()
    home = settings.home.absolute()
    for site_id in sites:
        security.site_principal(site_id)  # refuse a bad site id before starting anything
    with _exclusive(home):
        state = load_state(home)
        running = _running_records(state, home)
        _refuse_strays(home, running)
        if KAFKA in running and state.secure != secure:
            mode = "secure" if state.secure else "plaintext"
            raise StackError(
                f"Kafka is already running in {mode} mode; `postmarket stack down` first to "
                f"switch to {'secure' if secure else 'plaintext'}"
            )
        state.processes = dict(running)
        state.secure = secure
        wanted = [KAFKA, PROMETHEUS] + ([POSTGRES] if with_postgres else [])
        # Written before Prometheus starts so its first service discovery already sees it.
        prometheus.register_scrape_target(
            home, WORKER_JOB, f"127.0.0.1:{settings.worker_metrics_port}"
        )
        started: list[str] = []
        try:
            for name in wanted:
                if name in running:
                    progress.done(name, f"already running (pid {running[name].pid})")
                    continue
                record = _STARTERS[name](home, state, timeout, progress)
                started.append(name)
                progress.done(name, f"started on port {record.port} (pid {record.pid})")
            kafka_record = state.processes[KAFKA]
            progress.begin(KAFKA, "creating pipeline topics")
            bootstrap, admin_security = admin_endpoint(home, state)
            info = kafka.describe_cluster(bootstrap, security=admin_security)
            created = ensure_topics(
                bootstrap, pipeline_topics(settings.topic_partitions), security=admin_security
            )
            progress.done(KAFKA, f"topics ready ({len(created)} created)")
            principals: list[str] = []
            if secure:
                progress.begin(KAFKA, "creating principals, ACLs and site quotas")
                state.sites = sorted(set(state.sites) | set(sites))
                with admin_client(bootstrap, security=admin_security) as admin:
                    principals = security.grant(
                        admin,
                        security.SecurePaths(home),
                        worker_id=settings.worker_id,
                        site_ids=state.sites,
                        quota=quota,
                        quota_site_ids=sites,
                    )
                progress.done(KAFKA, f"secure: {len(principals)} principals with ACLs")
        except BaseException:
            _roll_back(home, state, keep=set(running))
            raise
        state.settings = client_settings(state, home)
        save_state(home, state)
    version = kafka.running_version(kafka_record.pid) or state.kafka_version or "unknown"
    return UpResult(
        # Validated, so the paths in stack.json's settings become Paths again.
        settings=type(settings).model_validate(
            {**settings.model_dump(), "home": home, **state.settings}
        ),
        started=tuple(started),
        already_running=tuple(name for name in wanted if name in running),
        kafka_version=version,
        cluster_id=info.cluster_id,
        topics_created=tuple(created),
        secure=secure,
        principals=tuple(principals),
    )


def add_site(
    settings: Settings, site_id: str, quota: security.SiteQuota | None = None
) -> tuple[str, Path]:
    """Give one more site a principal on the running secure broker: SCRAM user, ACLs, quota.

    Returns the principal and its password file (0600) to hand to that site's collector.
    """
    home = settings.home.absolute()
    principal = security.site_principal(site_id)
    with _exclusive(home):
        state = load_state(home)
        if KAFKA not in _running_records(state, home):
            raise StackError("Kafka is not running; `postmarket stack up --secure` first")
        if not state.secure:
            raise StackError("the stack runs without security; restart it with `up --secure`")
        bootstrap, admin_security = admin_endpoint(home, state)
        paths = security.SecurePaths(home)
        with admin_client(bootstrap, security=admin_security) as admin:
            security.grant(
                admin,
                paths,
                worker_id=settings.worker_id,
                site_ids=[site_id],
                quota=quota,
                central=False,
            )
        state.sites = sorted(set(state.sites) | {site_id})
        save_state(home, state)
    return principal, paths.password_file(principal)


def remove_site(settings: Settings, site_id: str) -> str:
    """Take one site's principal off the running secure broker (ACLs, quota, SCRAM user,
    password file); returns the principal. Its signing keys are revoked separately
    (``site-keys revoke``): this stops its records from arriving, that from counting."""
    home = settings.home.absolute()
    with _exclusive(home):
        state = load_state(home)
        if KAFKA not in _running_records(state, home):
            raise StackError("Kafka is not running; `postmarket stack up --secure` first")
        if not state.secure:
            raise StackError("the stack runs without security: there are no site principals")
        if site_id not in state.sites:
            known = ", ".join(state.sites) or "none"
            raise StackError(f"site {site_id!r} has no principal on this stack (sites: {known})")
        bootstrap, admin_security = admin_endpoint(home, state)
        with admin_client(bootstrap, security=admin_security) as admin:
            principal = security.revoke_site(admin, security.SecurePaths(home), site_id)
        state.sites = [site for site in state.sites if site != site_id]
        save_state(home, state)
    return principal


def _roll_back(home: Path, state: StackState, keep: set[str]) -> None:
    """Stop the services a failed ``up`` started, including one that never got ready."""
    for name in [name for name in state.processes if name not in keep]:
        record = state.processes.pop(name)
        # The original failure is what the operator needs to see; a stop error must not
        # replace it.
        with contextlib.suppress(OSError, StackError, TopicAdminError):
            _stop(record, home)
    state.settings = client_settings(state, home)
    save_state(home, state)


# --- down -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownResult:
    """What ``down`` stopped; ``forced`` needed SIGKILL after the grace period."""

    stopped: tuple[str, ...]
    forced: tuple[str, ...]
    not_running: tuple[str, ...]


def _stop(record: ProcessRecord, home: Path) -> bool | None:
    """Stop one recorded service; None if it was not running, else whether it was clean."""
    # Each service leads its own process group (new session), so pgid == recorded pid.
    # The group is signalled only if its leader is verifiably ours, or if the leader is
    # gone but children of it (still in its group) are left behind.
    if not is_ours(record.pid, home) and not group_members(record.pid):
        return None
    signal_ = STOP_SIGNALS.get(record.name, signal.SIGTERM)
    return stop_group(record.pid, signal_, STOP_TIMEOUTS.get(record.name, 20.0))


def down(settings: Settings, progress: Progress | None = None) -> DownResult:
    """Stop every service this stack started, verify none is left, forget their pids."""
    progress = progress or SilentProgress()
    home = settings.home.absolute()
    with _exclusive(home):
        state = load_state(home)
        stopped: list[str] = []
        forced: list[str] = []
        not_running: list[str] = []
        # Prometheus first so it does not log scrape errors for services going away.
        for name in sorted(state.processes, key=_stop_order):
            record = state.processes[name]
            progress.begin(name, f"stopping pid {record.pid}")
            outcome = _stop(record, home)
            if outcome is None:
                not_running.append(name)
                progress.done(name, "was not running")
                continue
            stopped.append(name)
            if not outcome:
                forced.append(name)
            progress.done(name, "stopped" if outcome else "killed after the grace period")
        leftovers = sorted(
            set(stray_services(home))
            | {pid for record in state.processes.values() for pid in group_members(record.pid)}
        )
        if leftovers:
            raise StackError(
                f"processes {leftovers} using {home} are still running after down; those not "
                f"recorded in {state_file(home)} were not started by it and are left alone"
            )
        state.processes = {}
        state.settings = {}
        save_state(home, state)
    return DownResult(tuple(stopped), tuple(forced), tuple(not_running))


def _stop_order(name: str) -> int:
    order = (PROMETHEUS, KAFKA, POSTGRES)
    return order.index(name) if name in order else len(order)
