"""No secret leaves its file: a scenario on the secure stack, then every output scanned for them.

The stack is started with ``--secure`` and metrics basic auth; each simulated site gets a
pseudonymisation (HMAC) key and an Ed25519 signing key that only this test knows, and
connects as its own Kafka principal. The small scenario then runs through the real
collector path, a real stream worker, the evidence sink and the HTML report. Afterwards
every place a secret could leak to is read and searched for every secret in every form it
could take there (raw bytes, hex, base64, the PEM body, the basic-auth header): every
record (key, value, headers) of every topic including Faust's changelogs, every log (the
worker's, the broker's, Prometheus', and this process's Python logging at DEBUG), every
/metrics page and what Prometheus stored, the report, the evidence database and stack.json.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import sqlite3
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from prometheus_client import CollectorRegistry

from collectors.delivery import RecordSender
from collectors.metrics import CollectorMetrics
from collectors.producer import EventProducer
from collectors.pseudonym import PseudonymKey
from evidence.metrics import EvidenceMetrics, PeriodicRefresh
from evidence.report import build_report
from evidence.report_render import write_report
from evidence.sink import EvidenceSink
from evidence.store import EvidenceStore
from launcher.demo import register_fleet
from launcher.local_worker import LocalWorker
from launcher.stack import kafka, manager, security
from launcher.stack.prometheus import (
    PrometheusPaths,
    register_scrape_target,
)
from postmarket import topics
from postmarket.authenticity import SigningKey
from postmarket.config import Settings
from postmarket.kafka_security import KafkaSecurity
from postmarket.metrics_endpoint import MetricsEndpoint, MetricsServer, serve_metrics
from postmarket.scrape_targets import COLLECTOR_JOB, EVIDENCE_JOB, WORKER_JOB
from postmarket.secrets import write_secret_file
from postmarket.topic_reader import read_to_end
from postmarket.versions import preset
from simulator.collector_path import SiteSetup, kafka_connector
from simulator.run import run_simulation
from simulator.scenario import Scenario, load_scenario
from tests.conftest import make_stack_home, release_stack_home
from tests.factories import make_prediction
from tests.integration.pipeline_io import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "small.toml"
METRICS_USER = "prometheus"
ACTOR = "secrets-scan"
CATCH_UP_S = 120.0
SCRAPE_WAIT_S = 30.0


# --- the secrets and the scanner --------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """One secret and every form in which it could appear in an output."""

    name: str
    forms: dict[str, bytes] = field(repr=False)  # a failing assertion must not print them


def byte_secret(name: str, raw: bytes, extra: dict[str, bytes] | None = None) -> Secret:
    """A binary key: raw, hex (either case) and base64 (standard and URL-safe, padded or not)."""
    standard, urlsafe = base64.b64encode(raw), base64.urlsafe_b64encode(raw)
    return Secret(
        name,
        {
            "raw": raw,
            "hex": raw.hex().encode(),
            "HEX": raw.hex().upper().encode(),
            "base64": standard.rstrip(b"="),
            "base64url": urlsafe.rstrip(b"="),
            **(extra or {}),
        },
    )


def signing_secret(name: str, seed: bytes) -> Secret:
    """An Ed25519 seed, plus the body of its PEM (PKCS#8) file, whole and line by line."""
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    extra = {"pem body": b"".join(body)}
    extra |= {f"pem line {i}": line for i, line in enumerate(body) if len(line) >= 16}
    return byte_secret(name, seed, extra)


def text_secret(name: str, text: str, extra: dict[str, bytes] | None = None) -> Secret:
    return Secret(name, {"text": text.encode(), **(extra or {})})


@dataclass
class SecretScanner:
    """Searches outputs for any form of any secret; remembers what it scanned and found."""

    secrets: list[Secret]
    scanned: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def scan(self, where: str, content: bytes | str) -> list[str]:
        data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
        self.scanned[where] = self.scanned.get(where, 0) + len(data)
        found = [
            f"{secret.name} ({form}) in {where}"
            for secret in self.secrets
            for form, value in secret.forms.items()
            if value in data
        ]
        self.findings += found
        return found

    def scan_file(self, path: Path, where: str | None = None) -> None:
        self.scan(where or str(path), path.read_bytes())


# --- the scenario's parts ---------------------------------------------------------------------


@dataclass(frozen=True)
class SiteSecrets:
    site_id: str
    pseudonym_key: bytes
    signing_seed: bytes


@dataclass(frozen=True)
class SecureStack:
    result: manager.UpResult
    metrics_password: str
    metrics_password_file: Path

    @property
    def home(self) -> Path:
        return self.result.settings.home

    @property
    def paths(self) -> security.SecurePaths:
        return security.SecurePaths(self.home)

    @property
    def prometheus_url(self) -> str:
        return self.result.settings.prometheus_url.rstrip("/")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(SCENARIO)


@pytest.fixture(scope="module")
def secure_stack(
    request: pytest.FixtureRequest, scenario: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureStack]:
    """``stack up --secure`` with one principal per scenario site and metrics basic auth.

    Prometheus learns its scrape credentials from the environment at ``up`` (as the CLI
    does), so the variables are set only while the stack starts.
    """
    home = make_stack_home("pms-secrets-scan-")
    password = f"metrics-{secrets.token_urlsafe(24)}"
    password_file = tmp_path_factory.mktemp("metrics-auth") / "metrics.password"
    write_secret_file(password_file, password.encode())
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("POSTMARKET_METRICS_BASIC_AUTH_USER", METRICS_USER)
            env.setenv("POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE", str(password_file))
            result = manager.up(
                Settings(home=home), secure=True, sites=[site.id for site in scenario.sites]
            )
        yield SecureStack(result, password, password_file)
    finally:
        manager.down(Settings(home=home))
        release_stack_home(request, home)


def all_secrets(stack: SecureStack, sites: list[SiteSecrets]) -> list[Secret]:
    found: list[Secret] = []
    for site in sites:
        found.append(byte_secret(f"{site.site_id} HMAC key", site.pseudonym_key))
        found.append(signing_secret(f"{site.site_id} signing key", site.signing_seed))
    for path in sorted(stack.paths.credentials.glob("*.password")):
        found.append(text_secret(f"Kafka password of {path.stem}", path.read_text().strip()))
    basic = base64.b64encode(f"{METRICS_USER}:{stack.metrics_password}".encode())
    found.append(
        text_secret("metrics password", stack.metrics_password, {"basic auth header": basic})
    )
    return found


def basic_auth_get(url: str, password: str | None = None) -> bytes:
    request = urllib.request.Request(url)  # noqa: S310 - loopback endpoints of this test
    if password is not None:
        token = base64.b64encode(f"{METRICS_USER}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body: bytes = response.read()
    return body


def prometheus_json(base: str, path: str, **params: str) -> Any:
    return json.loads(basic_auth_get(f"{base}{path}?{urllib.parse.urlencode(params)}"))


def admin(stack: SecureStack) -> tuple[str, KafkaSecurity]:
    """The stack's own admin connection (a super user by certificate): reads every topic."""
    bootstrap, admin_security = manager.admin_endpoint(stack.home, manager.load_state(stack.home))
    assert admin_security is not None
    return bootstrap, admin_security


def lag(stack: SecureStack, group: str, topic_names: Iterable[str]) -> int:
    """Records in ``topic_names`` that ``group`` has not committed yet."""
    bootstrap, admin_security = admin(stack)
    kwargs = admin_security.kafka_python_kwargs()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **kwargs)
    client = KafkaAdminClient(bootstrap_servers=bootstrap, **kwargs)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topic_names
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        committed = client.list_group_offsets(group).get(group, {})
        return sum(
            max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in consumer.end_offsets(partitions).items()
        )
    finally:
        client.close()
        consumer.close()


def wait_until_caught_up(stack: SecureStack, group: str) -> None:
    """The v1 ingress first, then the join (which applies each event to its streams)."""
    deadline = time.monotonic() + CATCH_UP_S
    for stage in (
        [topics.PREDICTIONS, topics.FOLLOWUPS],
        [topics.INPUTS, f"{group}-inputs-by-site"],
    ):
        while (behind := lag(stack, group, stage)) > 0:
            assert time.monotonic() < deadline, f"worker still {behind} records behind"
            time.sleep(1.0)


def send_forgery(stack: SecureStack, site_id: str) -> None:
    """A site principal sends a prediction signed by a key nobody registered (refused)."""
    site = stack.paths.client_security(security.site_principal(site_id))
    forged = make_prediction(site_id=site_id, case_pseudonym=f"forged-{uuid.uuid4().hex}")
    with EventProducer(stack.result.settings.kafka_bootstrap, security=site) as producer:
        producer.deliver([forged], signer=SigningKey.generate())


def wait_for_scrapes(stack: SecureStack, jobs: Iterable[str]) -> None:
    """Every job up (worker and sink through basic auth) and scraped since this call."""
    since = time.time()
    wanted = set(jobs)
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:
        targets = prometheus_json(stack.prometheus_url, "/api/v1/targets")["data"]
        fresh = {
            target["labels"]["job"]
            for target in targets["activeTargets"]
            if target["health"] == "up"
            and target["lastScrape"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
        }
        if wanted <= fresh:
            return
        assert time.monotonic() < deadline, f"not scraped after the run: {wanted - fresh}"
        time.sleep(1.0)


def every_record(stack: SecureStack) -> Iterator[tuple[str, bytes]]:
    """(topic, key + value + header names and values) of every record of every topic."""
    bootstrap, admin_security = admin(stack)
    client = KafkaAdminClient(bootstrap_servers=bootstrap, **admin_security.kafka_python_kwargs())
    try:
        names = sorted(client.list_topics())
    finally:
        client.close()
    for record in read_to_end(bootstrap, *names, security=admin_security):
        parts = [record.key or b"", record.value or b""]
        for name, value in record.headers or ():
            parts += [name.encode(), value or b""]
        yield record.topic, b"\x00".join(parts)


# --- the test ---------------------------------------------------------------------------------


def test_no_secret_appears_in_any_record_log_metric_or_report(
    secure_stack: SecureStack,
    scenario: Scenario,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the in-process collectors and kafka-python, everything
    # kafka-python at DEBUG even if an earlier in-process `collector run` quieted its logger.
    caplog.set_level(logging.DEBUG, logger="kafka")
    stack = secure_stack
    base = stack.result.settings
    bootstrap = base.kafka_bootstrap
    sites = [
        SiteSecrets(site.id, secrets.token_bytes(32), secrets.token_bytes(32))
        for site in scenario.sites
    ]
    scanner = SecretScanner(all_secrets(stack, sites))
    principals = {path.stem for path in stack.paths.credentials.glob("*.password")}
    assert {security.WORKER, security.AUDITOR} | {
        security.site_principal(site.site_id) for site in sites
    } <= principals

    # The scanner can fail: every form of every secret is found when planted in an output.
    for secret in scanner.secrets:
        for form, value in secret.forms.items():
            assert SecretScanner([secret]).scan("planted", b"line " + value + b" end"), form

    settings = base.model_copy(
        update={
            "worker_id": f"{base.worker_id}-{uuid.uuid4().hex[:6]}",
            "worker_metrics_port": free_port(),
            "metrics_basic_auth_user": METRICS_USER,
            "metrics_basic_auth_password_file": stack.metrics_password_file,
        }
    )
    worker_security = settings.kafka_security()
    register_scrape_target(stack.home, WORKER_JOB, f"127.0.0.1:{settings.worker_metrics_port}")
    collector_servers: list[MetricsServer] = []
    setups: dict[str, SiteSetup] = {}
    for site in sites:
        registry = CollectorRegistry()
        server = serve_metrics(registry, MetricsEndpoint(port=free_port()))
        collector_servers.append(server)
        register_scrape_target(stack.home, COLLECTOR_JOB, server.address)
        site_security: KafkaSecurity = stack.paths.client_security(
            security.site_principal(site.site_id)
        )
        connect: Callable[[], RecordSender] = kafka_connector(bootstrap, site_security)
        setups[site.site_id] = SiteSetup(
            PseudonymKey(site.pseudonym_key),
            SigningKey.from_seed(site.signing_seed),
            connect,
            CollectorMetrics.create(registry),
        )

    database = tmp_path / "evidence.db"
    evidence_registry = CollectorRegistry()
    evidence_server = serve_metrics(
        evidence_registry,
        MetricsEndpoint(
            port=free_port(),
            basic_auth_user=METRICS_USER,
            basic_auth_password_file=stack.metrics_password_file,
        ),
    )
    register_scrape_target(stack.home, EVIDENCE_JOB, evidence_server.address)
    worker = LocalWorker(settings, tmp_path / "worker.log")
    try:
        with worker, EvidenceStore(f"sqlite:///{database}") as store:
            run_simulation(
                scenario,
                kafka_connector(bootstrap, worker_security),  # registry and public keys
                tmp_path / "ground-truth.json",
                state_dir=tmp_path / "sites",
                site_setups=setups,
            )
            send_forgery(stack, sites[0].site_id)
            wait_until_caught_up(stack, settings.worker_id)
            register_fleet(store, scenario, actor=ACTOR)
            refresh = PeriodicRefresh(EvidenceMetrics(evidence_registry), store, interval_s=1.0)
            refresh.start()
            try:
                counts = EvidenceSink(store, bootstrap, security=worker_security).run(
                    until_idle_s=3.0
                )
                assert counts.outcomes_new > 0
                wait_for_scrapes(stack, [WORKER_JOB, EVIDENCE_JOB, COLLECTOR_JOB])
            finally:
                refresh.stop()
            worker_metrics = basic_auth_get(worker.metrics_url, stack.metrics_password)
            scanner.scan("worker /metrics", worker_metrics)
            refused = rb'postmarket_events_unauthentic_total\{[^}]*reason="unknown_key"'
            assert re.search(refused, worker_metrics), "the forgery was not refused and counted"
            scanner.scan(
                "evidence sink /metrics",
                basic_auth_get(f"http://{evidence_server.address}/metrics", stack.metrics_password),
            )
            for server in collector_servers:
                scanner.scan(
                    f"collector /metrics {server.address}",
                    basic_auth_get(f"http://{server.address}/metrics"),
                )
            first = scenario.start.date() - timedelta(days=7)
            last = scenario.start.date() + timedelta(days=scenario.days)
            for device in scenario.devices:
                out = tmp_path / f"{device.id}-report.html"
                write_report(
                    build_report(store, device.id, first, last, preset("nmpa-syzb")), out, "html"
                )
                scanner.scan_file(out, f"report of {device.id}")
    finally:
        evidence_server.close()
        for server in collector_servers:
            server.close()

    # Every record of every topic, the changelogs of the worker's tables included.
    records_per_topic: dict[str, int] = {}
    for topic, record in every_record(stack):
        records_per_topic[topic] = records_per_topic.get(topic, 0) + 1
        scanner.scan(f"topic {topic}", record)
    # Collectors send signed batches; the simulator's malformed records go to the v1 topics.
    assert records_per_topic.get(topics.INPUTS, 0) > 0, records_per_topic
    assert any(name.endswith("-changelog") for name in records_per_topic), records_per_topic

    # What Prometheus stored: metric names, every label's values, every series.
    prometheus = stack.prometheus_url
    names = prometheus_json(prometheus, "/api/v1/label/__name__/values")["data"]
    assert "postmarket_events_unauthentic_total" in names
    scanner.scan("Prometheus metric names", json.dumps(names))
    for label in prometheus_json(prometheus, "/api/v1/labels")["data"]:
        values = prometheus_json(prometheus, f"/api/v1/label/{label}/values")["data"]
        scanner.scan(f"Prometheus values of {label}", json.dumps(values))
    series = prometheus_json(prometheus, "/api/v1/series", **{"match[]": '{__name__=~".+"}'})
    scanner.scan("Prometheus series", json.dumps(series))
    scanner.scan("Prometheus targets", json.dumps(prometheus_json(prometheus, "/api/v1/targets")))

    # Logs: the worker's, the stack's (broker, Prometheus), this process's at DEBUG.
    scanner.scan_file(worker.log_file, "worker log")
    stack_logs = sorted(path for path in (stack.home / "logs").rglob("*") if path.is_file())
    assert kafka.KafkaPaths(stack.home).log in stack_logs
    assert PrometheusPaths(stack.home).log in stack_logs
    for path in stack_logs:
        scanner.scan_file(path)
    assert "sasl_plain_password" in caplog.text  # kafka-python logged its config at DEBUG
    scanner.scan("Python logging (DEBUG)", caplog.text)
    scanner.scan("Python log records", "\n".join(repr(r.__dict__) for r in caplog.records))

    # The evidence database, stack.json and Prometheus' own configuration.
    with sqlite3.connect(database) as connection:
        scanner.scan("evidence database dump", "\n".join(connection.iterdump()))
    scanner.scan_file(manager.state_file(stack.home), "stack.json")
    scanner.scan_file(PrometheusPaths(stack.home).config_file, "prometheus.yml")

    must_have_content = ["worker log", "Python logging (DEBUG)", "evidence database dump"]
    must_have_content += [f"report of {device.id}" for device in scenario.devices]
    assert all(scanner.scanned.get(where, 0) > 0 for where in must_have_content), scanner.scanned
    leaks = scanner.findings
    assert not leaks, "\n".join(leaks)


def test_scanner_reports_each_form_it_finds() -> None:
    key = bytes(range(32))
    scanner = SecretScanner([byte_secret("k", key), text_secret("pw", "hunter2-canary")])
    assert scanner.scan("a log", f"key={key.hex()} pw=hunter2-canary") == [
        "k (hex) in a log",
        "pw (text) in a log",
    ]
    assert scanner.scan("a record", b"\x01" + key + b"\x02") == ["k (raw) in a record"]
    assert scanner.scan("clean", "nothing here") == []
    assert len(scanner.findings) == 3
