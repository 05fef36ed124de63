"""``postmarket demo``: one case through the whole pipeline on the local stack.

A real DICOM header (shipped with pydicom) goes through the collector's code path:
pseudonymised with a site key, acquisition features extracted, a prediction and its
pathology follow-up produced to Kafka; a real Faust worker joins them; the demo shows
the joined outcome from ``pms.outcomes.v1`` and the outcome counter as Prometheus
scraped it. This is the composition root, so it may import every side.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from postmarket import __version__, topics
from postmarket.config import Settings
from postmarket.contracts import FollowUp, Outcome, Prediction, decode, utc_now
from postmarket.local_worker import LocalWorker
from postmarket.metrics import OUTCOMES

DEMO_SITE = "demo-hospital"
DEMO_DEVICE = "lung-nodule-ai"
DEMO_VERSION = "2.1.0.3"


class DemoError(RuntimeError):
    """A step of the demo did not complete; the message says which and why."""


@dataclass(frozen=True)
class DemoResult:
    outcome: Outcome
    prometheus_value: float
    metrics_url: str
    prometheus_url: str


def demo_site_key(home: Path) -> Path:
    """A random demo site key, created once with owner-only permissions."""
    key_file = home / "demo-site.key"
    if not key_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_hex(32))
    return key_file


def demo_case(key_file: Path) -> tuple[Prediction, FollowUp]:
    """A prediction and its pathology follow-up for pydicom's CT sample, de-identified."""
    import pydicom
    from pydicom.data import get_testdata_file

    from collectors.acquisition import acquisition_features
    from collectors.pseudonym import SiteKey, case_pseudonym

    key = SiteKey.from_file(key_file)
    path = get_testdata_file("CT_small.dcm")
    if path is None:
        raise DemoError("pydicom's CT_small.dcm sample is missing from this installation")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    case = case_pseudonym(key, str(header.StudyInstanceUID))
    seen = utc_now()
    prediction = Prediction(
        event_id=uuid.uuid4(),
        site_id=DEMO_SITE,
        device_id=DEMO_DEVICE,
        device_version=DEMO_VERSION,
        task="malignant_nodule",
        case_pseudonym=case,
        event_time=seen,
        score=0.87,
        decision="positive",
        operating_threshold=0.5,
        acquisition=acquisition_features(header, key),
        collector_version=__version__,
    )
    followup = FollowUp(
        event_id=uuid.uuid4(),
        site_id=DEMO_SITE,
        case_pseudonym=case,
        event_time=seen + timedelta(seconds=1),
        label="positive",
        source="pathology",
        collector_version=__version__,
    )
    return prediction, followup


def wait_for_outcome(settings: Settings, prediction: Prediction, timeout_s: float) -> Outcome:
    """Read ``pms.outcomes.v1`` until the outcome of ``prediction`` appears."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topics.OUTCOMES) or set()
        consumer.assign([TopicPartition(topics.OUTCOMES, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    outcome = decode(Outcome, record.value)
                    if outcome.prediction_event_id == prediction.event_id:
                        return outcome
    finally:
        consumer.close()
    raise DemoError(f"no outcome on {topics.OUTCOMES} after {timeout_s:.0f} s")


def query_prometheus(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; the result vector (empty when nothing matches yet)."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - configured URL
        body = json.load(response)
    if body.get("status") != "success":
        raise DemoError(f"Prometheus refused {promql!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for_scraped_outcome(settings: Settings, timeout_s: float) -> float:
    """The demo stream's outcome count once Prometheus has scraped it from the worker."""
    promql = f'sum({OUTCOMES}_total{{site_id="{DEMO_SITE}"}})'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = query_prometheus(settings.prometheus_url, promql)
        if result and float(result[0]["value"][1]) >= 1:
            return float(result[0]["value"][1])
        time.sleep(1)
    raise DemoError(f"Prometheus has no {OUTCOMES}_total for {DEMO_SITE} after {timeout_s:.0f} s")


def run_demo(settings: Settings, console: Console, timeout_s: float = 120.0) -> DemoResult:
    """Send one case through a running stack and a fresh worker; return what came out."""
    from collectors.producer import EventProducer

    worker = LocalWorker(settings, settings.home / "logs" / "worker.log")
    with console.status("starting a stream worker (Faust)..."):
        worker.start(timeout_s)
    try:
        prediction, followup = demo_case(demo_site_key(settings.home))
        with console.status("collector: sending a de-identified prediction and its follow-up"):
            with EventProducer(settings.kafka_bootstrap) as producer:
                producer.deliver([prediction, followup])
        with console.status(f"waiting for the joined outcome on {topics.OUTCOMES}"):
            outcome = wait_for_outcome(settings, prediction, timeout_s)
        with console.status("waiting for Prometheus to scrape the worker"):
            value = wait_for_scraped_outcome(settings, timeout_s)
    finally:
        worker.stop()
    return DemoResult(outcome, value, worker.metrics_url, settings.prometheus_url)


def render(result: DemoResult, console: Console) -> None:
    """Show the outcome and where to look next."""
    outcome = result.outcome
    table = Table(title=f"joined outcome on {topics.OUTCOMES}", show_header=False)
    table.add_row("stream", outcome.stream.as_key())
    table.add_row("case pseudonym", outcome.case_pseudonym)
    table.add_row(
        "decision / truth", f"{outcome.decision} / {outcome.label} ({outcome.truth_source})"
    )
    acquisition = outcome.acquisition
    table.add_row(
        "acquisition",
        f"{acquisition.manufacturer} {acquisition.model}, "
        f"{acquisition.slice_thickness_mm} mm ({acquisition.slice_thickness_band})",
    )
    console.print(table)
    console.print(
        Panel.fit(
            f"Prometheus {result.prometheus_url} scraped "
            f'{OUTCOMES}_total{{site_id="{DEMO_SITE}"}} = {result.prometheus_value:g}\n'
            f"worker metrics were served at {result.metrics_url}",
            title="metrics",
        )
    )
