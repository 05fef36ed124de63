"""``postmarket stack status``: every service the local stack recorded, probed: its process
alive, and answering (Kafka's metadata, Prometheus' ``/-/ready`` and targets, PostgreSQL's
connections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.stack import kafka, postgres, prometheus
from launcher.stack.manager import (
    KAFKA,
    POSTGRES,
    PROMETHEUS,
    StackState,
    admin_endpoint,
    load_state,
)
from launcher.stack.processes import ProcessRecord, StackError, is_ours
from postmarket.config import Settings
from postmarket.topic_admin import describe_error


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``stack status`` reports it."""

    name: str
    running: bool
    ready: bool
    pid: int | None
    address: str
    detail: str
    log: str


@dataclass(frozen=True)
class StackStatus:
    """The whole stack: every service, Kafka's identity and Prometheus' targets."""

    home: Path
    services: tuple[ServiceStatus, ...]
    kafka_version: str | None = None
    cluster_id: str | None = None
    broker_count: int = 0
    targets: tuple[prometheus.ScrapeTarget, ...] = ()
    secure: bool = False
    sites: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """Every expected service runs and answers."""
        return bool(self.services) and all(s.running and s.ready for s in self.services)


def _kafka_status(home: Path, state: StackState) -> tuple[ServiceStatus, dict[str, Any]]:
    log = str(kafka.KafkaPaths(home).log)
    record = state.processes.get(KAFKA)
    if record is None or not is_ours(record.pid, home):
        return ServiceStatus(KAFKA, False, False, None, "", "not running", log), {}
    bootstrap = f"127.0.0.1:{record.port}"
    version = kafka.running_version(record.pid)
    try:
        admin_bootstrap, admin_security = admin_endpoint(home, state)
        info = kafka.describe_cluster(admin_bootstrap, timeout=5.0, security=admin_security)
    except Exception as error:  # any client failure means "running but not answering"
        detail = f"no metadata answer: {describe_error(error)}"
        return ServiceStatus(KAFKA, True, False, record.pid, bootstrap, detail, log), {
            "kafka_version": version
        }
    mode = "secure: SASL_SSL, ACLs" if state.secure else "plaintext"
    detail = f"Kafka {version}, {info.broker_count} broker(s), {mode}"
    status = ServiceStatus(KAFKA, True, info.broker_count > 0, record.pid, bootstrap, detail, log)
    facts = {
        "kafka_version": version,
        "cluster_id": info.cluster_id,
        "broker_count": info.broker_count,
    }
    return status, facts


def _prometheus_status(
    home: Path, record: ProcessRecord | None
) -> tuple[ServiceStatus, dict[str, Any]]:
    log = str(prometheus.PrometheusPaths(home).log)
    if record is None or not is_ours(record.pid, home):
        return ServiceStatus(PROMETHEUS, False, False, None, "", "not running", log), {}
    url = prometheus.base_url(record.port)
    if not prometheus.is_ready(url):
        return ServiceStatus(PROMETHEUS, True, False, record.pid, url, "not ready", log), {}
    try:
        targets = tuple(prometheus.scrape_targets(url))
    except StackError as error:
        return ServiceStatus(PROMETHEUS, True, False, record.pid, url, str(error), log), {}
    up_count = sum(target.health == "up" for target in targets)
    detail = f"ready, {len(targets)} target(s), {up_count} up"
    return ServiceStatus(PROMETHEUS, True, True, record.pid, url, detail, log), {"targets": targets}


def _postgres_status(home: Path, record: ProcessRecord) -> ServiceStatus:
    log = str(postgres.PostgresPaths(home).log)
    if not is_ours(record.pid, home):
        return ServiceStatus(POSTGRES, False, False, None, "", "not running", log)
    url = postgres.database_url(record.port)
    ready = postgres.accepts_connections(record.port)
    detail = "accepting connections" if ready else "not accepting connections"
    return ServiceStatus(POSTGRES, True, ready, record.pid, url, detail, log)


def status(settings: Settings) -> StackStatus:
    """Probe every recorded service: process alive, and answering (metadata, /-/ready, SQL)."""
    home = settings.home.absolute()
    state = load_state(home)
    kafka_service, kafka_facts = _kafka_status(home, state)
    prometheus_service, prometheus_facts = _prometheus_status(home, state.processes.get(PROMETHEUS))
    services = [kafka_service, prometheus_service]
    if POSTGRES in state.processes:
        services.append(_postgres_status(home, state.processes[POSTGRES]))
    return StackStatus(
        home=home,
        services=tuple(services),
        secure=state.secure,
        sites=tuple(state.sites),
        **kafka_facts,
        **prometheus_facts,
    )
