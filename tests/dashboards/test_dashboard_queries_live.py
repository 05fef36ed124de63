"""Every panel and rule expression against a real Prometheus that scraped the real pipeline.

A scenario goes through a collector's outbox and delivery loop, Kafka, a stream worker and
the evidence sink; the stack's Prometheus scrapes all three. Then each panel query (template
variables set to the scenario's device, version and site) must return series, every
expression must parse, and the template variables must offer what the scenario used.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from collectors.delivery import DeliveryLoop
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from dashboards import metric_names
from dashboards.build import render_all
from dashboards.queries import PanelQuery, panel_queries, resolve, variable_queries
from evidence.metrics import EvidenceMetrics, PeriodicRefresh
from evidence.sink import EvidenceSink
from evidence.store import EvidenceStore
from launcher.local_worker import LocalWorker
from launcher.stack.prometheus import (
    register_scrape_target,
)
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import encode
from postmarket.contracts.events import StreamKey
from postmarket.metrics_endpoint import MetricsEndpoint, serve_metrics
from postmarket.scrape_targets import COLLECTOR_JOB, EVIDENCE_JOB, WORKER_JOB
from tests.factories import (
    make_followup,
    make_prediction,
    make_rebaseline,
    make_registry_entry,
)
from tests.integration.pipeline_io import SignedProducer, free_port, send_raw

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
DASHBOARDS = {name: json.loads(text) for name, text in render_all().items()}
PANEL_QUERIES = [q for d in DASHBOARDS.values() for q in panel_queries(d)]
RULE_EXPRESSIONS = {
    rule["alert"]: rule["expr"]
    for path in sorted(RULES_DIR.glob("*.yml"))
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    for rule in group["rules"]
}
SERIES_DEADLINE_S = 45.0
NOT_PRE_INITIALISED = (metric_names.COLLECTOR_INPUTS_ACCEPTED, metric_names.COLLECTOR_CASES_WAITING)
"""Labelled collector metrics whose ``kind`` series appear only once the DICOM/folder intake
counts something; this scenario enters at the outbox. They pass once their kinds are
created at 0 in ``CollectorMetrics.create`` (as ``files_rejected`` reasons are)."""


@dataclass(frozen=True)
class Scenario:
    prometheus_url: str
    device: str
    version: str
    unregistered_version: str
    site: str
    task: str
    collector: str

    @property
    def variables(self) -> dict[str, str]:
        return {
            "device": self.device,
            "version": f"{self.version}|{self.unregistered_version}",
            "site": self.site,
            "task": self.task,
            "collector": self.collector,
        }


def prometheus_get(base: str, path: str, **params: str | list[str]) -> dict[str, Any]:
    """GET a Prometheus API path; the JSON answer, including the error ones (HTTP 400)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
    return answer


def instant(base: str, expr: str) -> dict[str, Any]:
    return prometheus_get(base, "/api/v1/query", query=expr)


def proposed_metric_in(expr: str) -> str | None:
    return next((p.name for p in metric_names.PROPOSED if p.name in expr), None)


def uninitialised_metric_in(expr: str) -> str | None:
    return next((name for name in NOT_PRE_INITIALISED if name in expr), None)


def _feed(bootstrap: str, outbox_dir: Path, metrics: CollectorMetrics, s: Scenario) -> None:
    """Claims on the registry topic, then cases through the collector's outbox."""
    entry = make_registry_entry(device_id=s.device, device_version=s.version)
    send_raw(bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    stream = StreamKey(device_id=s.device, device_version=s.version, site_id=s.site, task=s.task)
    decision = make_rebaseline(stream=stream)
    send_raw(bootstrap, topics.REBASELINES, [(decision.stream.as_key().encode(), encode(decision))])
    rng = np.random.default_rng(7)
    events: list[Any] = []
    truths = ["positive"] * 60 + ["negative"] * 30
    for i, truth in enumerate(truths):
        case = f"c-{s.site}-{i}"
        correct = rng.random() < (0.40 if truth == "positive" else 0.90)  # claim 0.872 / 0.907
        decision = truth if correct else ("negative" if truth == "positive" else "positive")
        common = {"case_pseudonym": case, "site_id": s.site}
        events.append(
            make_prediction(
                device_id=s.device,
                device_version=s.version,
                task=s.task,
                decision=decision,
                **common,
            )
        )
        events.append(make_followup(label=truth, **common))
    # Predictions still awaiting truth: with them the stream completes a 500-prediction
    # window of its label-free estimate from scores.
    for i, score in enumerate(rng.random(420)):
        events.append(
            make_prediction(
                device_id=s.device,
                device_version=s.version,
                task=s.task,
                case_pseudonym=f"w-{s.site}-{i}",
                site_id=s.site,
                score=float(score),
                decision="positive" if score >= 0.5 else "negative",
            )
        )
    for i in range(3):  # a version whose minor change was never registered
        events.append(
            make_prediction(
                device_id=s.device,
                device_version=s.unregistered_version,
                task=s.task,
                case_pseudonym=f"u-{s.site}-{i}",
                site_id=s.site,
            )
        )
    with Outbox(outbox_dir / "outbox.db", metrics=metrics) as outbox:
        for event in events:
            outbox.put(event)
        loop = DeliveryLoop(outbox, lambda: SignedProducer(bootstrap), metrics)
        loop.drain()
        loop.close()
    with SignedProducer(bootstrap) as producer:  # a collector resend: counted as duplicate
        producer.deliver([events[0]])
    send_raw(bootstrap, topics.PREDICTIONS, [(b"c-bad", b"not an event")])
    # A forgery: a valid prediction claiming the site without its signature (refused).
    forged = make_prediction(
        device_id=s.device, task=s.task, case_pseudonym=f"forged-{s.site}", site_id=s.site
    )
    send_raw(
        bootstrap,
        topics.PREDICTIONS,
        [(forged.case_pseudonym.encode(), encode(forged))],
        signed=False,
    )


@pytest.fixture(scope="module")
def scenario(kafka_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    home: Path = kafka_stack.settings.home
    tmp = tmp_path_factory.mktemp("dashboards-live")
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-dashboards-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp,
            # A one-stream plan whose sensitivity chart has an ARL0 of 5,000 referable cases:
            # the scenario's 60 (sensitivity 0.40) make it fire twice, so an alert recurs.
            "fleet_false_alarms_per_year": 3.6,
            "fleet_streams": 1,
        }
    )
    register_scrape_target(home, WORKER_JOB, f"127.0.0.1:{settings.worker_metrics_port}")
    registry = CollectorRegistry()
    collector_metrics = CollectorMetrics.create(registry)
    collector_port = free_port()
    server, thread = start_http_server(collector_port, "127.0.0.1", registry=registry)
    register_scrape_target(home, COLLECTOR_JOB, f"127.0.0.1:{collector_port}")
    minor = uuid.uuid4().int % 1000
    s = Scenario(
        prometheus_url=kafka_stack.settings.prometheus_url.rstrip("/"),
        device=f"dev-{uuid.uuid4().hex[:6]}",
        version=f"3.{minor}.0.0",
        unregistered_version=f"3.{minor + 1}.0.0",
        site=f"site-{uuid.uuid4().hex[:6]}",
        task="referable_dr",
        collector=f"127.0.0.1:{collector_port}",
    )
    worker = LocalWorker(settings, tmp / "worker.log")
    worker.start()
    # The evidence sink stores the worker's alerts and exports them by lifecycle status.
    store = EvidenceStore(f"sqlite:///{tmp / 'evidence.db'}")
    sink = EvidenceSink(store, settings.kafka_bootstrap, group=f"sink-{uuid.uuid4().hex[:8]}")
    sink_thread = threading.Thread(target=sink.run, name="evidence-sink", daemon=True)
    evidence_registry = CollectorRegistry()
    refresh = PeriodicRefresh(EvidenceMetrics(evidence_registry), store, interval_s=1.0)
    evidence_server = serve_metrics(evidence_registry, MetricsEndpoint(port=free_port()))
    register_scrape_target(home, EVIDENCE_JOB, evidence_server.address)
    sink_thread.start()
    refresh.start()
    try:
        _feed(settings.kafka_bootstrap, tmp, collector_metrics, s)
        _wait_for_series(s)
        yield s
    finally:
        worker.stop()
        sink.stop()
        sink_thread.join(timeout=30)
        refresh.stop()
        evidence_server.close()
        store.close()
        server.shutdown()
        thread.join(timeout=5)


def _wait_for_series(s: Scenario) -> None:
    """Poll until every panel that can have data has it (or the deadline passes)."""
    pending = [
        q
        for q in PANEL_QUERIES
        if proposed_metric_in(q.expr) is None and uninitialised_metric_in(q.expr) is None
    ]
    deadline = time.monotonic() + SERIES_DEADLINE_S
    while pending and time.monotonic() < deadline:
        pending = [
            q
            for q in pending
            if not instant(s.prometheus_url, resolve(q.expr, s.variables))
            .get("data", {})
            .get("result")
        ]
        if pending:
            time.sleep(1.0)


def _panel_id(query: PanelQuery) -> str:
    return query.name


def _series_param(query: PanelQuery) -> Any:
    proposed = proposed_metric_in(query.expr)
    if proposed is not None:
        reason = f"metric not emitted yet: {proposed}"
    elif (uninitialised := uninitialised_metric_in(query.expr)) is not None:
        reason = f"series not created at 0 yet: {uninitialised}"
    else:
        return pytest.param(query, id=query.name)
    return pytest.param(query, id=query.name, marks=pytest.mark.xfail(strict=True, reason=reason))


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=_panel_id)
def test_panel_query_parses(scenario: Scenario, query: PanelQuery) -> None:
    answer = instant(scenario.prometheus_url, resolve(query.expr, {}))
    assert answer["status"] == "success", answer.get("error")


@pytest.mark.parametrize("name", sorted(RULE_EXPRESSIONS))
def test_rule_expression_parses(scenario: Scenario, name: str) -> None:
    answer = instant(scenario.prometheus_url, RULE_EXPRESSIONS[name])
    assert answer["status"] == "success", answer.get("error")


@pytest.mark.parametrize("query", [_series_param(q) for q in PANEL_QUERIES])
def test_panel_returns_series_for_the_scenario(scenario: Scenario, query: PanelQuery) -> None:
    answer = instant(scenario.prometheus_url, resolve(query.expr, scenario.variables))
    assert answer["status"] == "success", answer.get("error")
    assert answer["data"]["result"], f"no data: {resolve(query.expr, scenario.variables)}"


def test_template_variables_offer_what_the_scenario_used(scenario: Scenario) -> None:
    expected = {
        "device": {scenario.device},
        "version": {scenario.version, scenario.unregistered_version},
        "site": {scenario.site},
        "task": {scenario.task},
        "collector": {scenario.collector},
    }
    for dashboard in DASHBOARDS.values():
        for variable in variable_queries(dashboard):
            match = resolve(variable.match, scenario.variables)
            answer = prometheus_get(
                scenario.prometheus_url,
                f"/api/v1/label/{variable.label}/values",
                **{"match[]": [match]},
            )
            offered = set(answer["data"])
            assert expected[variable.variable] <= offered, (dashboard["uid"], variable)
