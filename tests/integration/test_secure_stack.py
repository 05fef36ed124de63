"""Least privilege on the real broker: `stack up --secure` (SASL_SSL, ACLs, quotas).

Every refusal here is the broker's: the clients are configured to try, and the error is the
authorization (or authentication) error the broker answered with.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from collectors.producer import EventProducer
from launcher.local_worker import LocalWorker
from launcher.stack import health, kafka, manager, security
from launcher.stack.processes import StackError
from postmarket import topic_admin, topics
from postmarket.contracts import Outcome, decode
from postmarket.kafka_security import KafkaSecurity
from postmarket.secrets import write_secret_file
from postmarket.site_key_topic import publish_site_keys
from tests.conftest import SECURE_SITE
from tests.factories import make_followup, make_prediction
from tests.integration.pipeline_io import free_port, site_signing_key

pytestmark = pytest.mark.integration
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def secure(secure_kafka_stack: manager.UpResult) -> security.SecurePaths:
    return security.SecurePaths(secure_kafka_stack.settings.home)


@pytest.fixture(scope="module")
def bootstrap(secure_kafka_stack: manager.UpResult) -> str:
    return secure_kafka_stack.settings.kafka_bootstrap


def _as(secure: security.SecurePaths, principal: str) -> dict[str, Any]:
    return secure.client_security(principal).kafka_python_kwargs()


def _site(secure: security.SecurePaths) -> dict[str, Any]:
    return _as(secure, security.site_principal(SECURE_SITE))


@pytest.fixture
def site_producer(bootstrap: str, secure: security.SecurePaths) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_block_ms=TIMEOUT_MS,
        **_site(secure),
    )
    yield producer
    producer.close(timeout=10)


# --- a site principal -------------------------------------------------------------------------


def test_site_writes_a_prediction_with_the_collector_producer(
    bootstrap: str, secure: security.SecurePaths
) -> None:
    prediction = make_prediction(site_id=SECURE_SITE, case_pseudonym=f"c-{uuid.uuid4().hex}")
    site = secure.client_security(security.site_principal(SECURE_SITE))
    with EventProducer(bootstrap, security=site) as producer:
        [delivery] = producer.deliver([prediction])
    assert delivery.topic == topics.PREDICTIONS


@pytest.mark.parametrize("topic", [topics.OUTCOMES, topics.ALERTS])
def test_site_is_refused_writing_an_output_topic(site_producer: KafkaProducer, topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        site_producer.send(topic, key=b"k", value=b"{}").get(timeout=30)


def test_site_is_refused_reading_an_input_topic(
    bootstrap: str, secure: security.SecurePaths
) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **_site(secure))
    try:
        consumer.assign([TopicPartition(topics.PREDICTIONS, 0)])
        consumer.seek_to_beginning()
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.poll(timeout_ms=TIMEOUT_MS)
    finally:
        consumer.close()


def test_site_is_refused_joining_a_consumer_group(
    bootstrap: str, secure: security.SecurePaths
) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        consumer = KafkaConsumer(
            topics.FOLLOWUPS,
            bootstrap_servers=bootstrap,
            group_id=f"site-group-{uuid.uuid4().hex[:6]}",
            **_site(secure),
        )
        try:
            consumer.poll(timeout_ms=TIMEOUT_MS)
        finally:
            consumer.close()


def test_site_sees_only_the_topics_it_may_write(
    bootstrap: str, secure: security.SecurePaths
) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **_site(secure))
    try:
        assert consumer.topics() == {topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS}
    finally:
        consumer.close()


def test_status_reports_the_secure_mode(secure_kafka_stack: manager.UpResult) -> None:
    report = health.status(secure_kafka_stack.settings)
    [kafka_service] = [s for s in report.services if s.name == manager.KAFKA]
    assert kafka_service.ready and "secure" in kafka_service.detail
    assert report.secure and SECURE_SITE in report.sites


def _quotas_settle(home: Path, principal: str, expected: dict[str, float]) -> dict[str, float]:
    """The principal's quotas once they equal ``expected``, or after 15 s: the controller
    applies a quota change, the brokers' metadata shows it a moment later."""
    endpoint, admin_security = manager.admin_endpoint(home, manager.load_state(home))
    deadline = time.monotonic() + 15.0
    with topic_admin.admin_client(endpoint, security=admin_security) as admin:
        while True:
            quotas = security.describe_user_quotas(admin, principal)
            if quotas == expected or time.monotonic() > deadline:
                return quotas
            time.sleep(0.2)


def test_site_principal_has_its_quota(secure_kafka_stack: manager.UpResult) -> None:
    expected = security.SiteQuota().as_config()
    principal = security.site_principal(SECURE_SITE)
    assert _quotas_settle(secure_kafka_stack.settings.home, principal, expected) == expected


def test_a_site_over_its_quota_is_throttled_by_the_broker(
    secure_kafka_stack: manager.UpResult,
    bootstrap: str,
    secure: security.SecurePaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import os

    quota = security.SiteQuota(producer_byte_rate=4096)
    principal, _ = manager.add_site(
        secure_kafka_stack.settings, f"greedy-{uuid.uuid4().hex[:6]}", quota
    )
    # One 256 KiB request: far above 4 KiB/s over the broker's quota window.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        batch_size=512 * 1024,
        linger_ms=200,
        max_block_ms=TIMEOUT_MS,
        **_as(secure, principal),
    )
    caplog.set_level(logging.WARNING, logger="kafka")
    try:
        futures = [
            producer.send(topics.PREDICTIONS, key=b"k", value=os.urandom(4096)) for _ in range(64)
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=1)
    assert "ProduceResponse throttled by broker" in caplog.text


def test_added_site_can_write_but_not_read(
    secure_kafka_stack: manager.UpResult, bootstrap: str, secure: security.SecurePaths
) -> None:
    site_id = f"added-{uuid.uuid4().hex[:6]}"
    principal, password_file = manager.add_site(secure_kafka_stack.settings, site_id)
    assert password_file.stat().st_mode & 0o077 == 0
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, max_block_ms=TIMEOUT_MS, **_as(secure, principal)
    )
    try:
        producer.send(topics.FOLLOWUPS, key=b"k", value=b"{}").get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topics.OUTCOMES, key=b"k", value=b"{}").get(timeout=30)
    finally:
        producer.close(timeout=10)
    assert site_id in manager.load_state(secure_kafka_stack.settings.home).sites


def test_removed_site_is_refused_at_once_and_cannot_log_in_again(
    secure_kafka_stack: manager.UpResult, bootstrap: str, secure: security.SecurePaths
) -> None:
    site_id = f"removed-{uuid.uuid4().hex[:6]}"
    principal, password_file = manager.add_site(secure_kafka_stack.settings, site_id)
    as_site = _as(secure, principal)  # read the password before the file goes
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=TIMEOUT_MS, **as_site)
    try:
        producer.send(topics.FOLLOWUPS, key=b"k", value=b"{}").get(timeout=30)
        assert manager.remove_site(secure_kafka_stack.settings, site_id) == principal
        # The connection opened before the removal is refused by the next request.
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topics.FOLLOWUPS, key=b"k", value=b"{}").get(timeout=30)
    finally:
        producer.close(timeout=10)
    with pytest.raises(KafkaTimeoutError):  # the SCRAM credential is gone
        KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=3000, **as_site)
    assert not password_file.exists()
    assert site_id not in manager.load_state(secure_kafka_stack.settings.home).sites
    assert _quotas_settle(secure_kafka_stack.settings.home, principal, {}) == {}
    with pytest.raises(StackError, match="has no principal"):
        manager.remove_site(secure_kafka_stack.settings, site_id)


# --- the auditor ------------------------------------------------------------------------------


def test_auditor_reads_outputs_in_its_group(bootstrap: str, secure: security.SecurePaths) -> None:
    consumer = KafkaConsumer(
        topics.ALERTS,
        bootstrap_servers=bootstrap,
        group_id=f"{security.AUDITOR_GROUP_PREFIX}-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        **_as(secure, security.AUDITOR),
    )
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=500)  # joins the group and fetches without an error
        assert {tp.topic for tp in consumer.assignment()} == {topics.ALERTS}
    finally:
        consumer.close()


def test_auditor_is_refused_writing(bootstrap: str, secure: security.SecurePaths) -> None:
    # Without idempotence: an idempotent producer is already refused its producer id
    # (ClusterAuthorizationFailed), before it names a topic.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        max_block_ms=TIMEOUT_MS,
        enable_idempotence=False,
        **_as(secure, security.AUDITOR),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topics.ALERTS, key=b"k", value=b"{}").get(timeout=30)
    finally:
        producer.close(timeout=10)


def test_auditor_is_refused_reading_inputs(bootstrap: str, secure: security.SecurePaths) -> None:
    # kafka-python's consumer only logs a topic it is not authorized for and waits, so ask
    # the broker directly: its metadata answer for the topic is the authorization error.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **_as(secure, security.AUDITOR))
    try:
        [described] = admin.describe_topics([topics.PREDICTIONS])
    finally:
        admin.close()
    assert kafka_errors.for_code(described["error_code"]) is TopicAuthorizationFailedError


def test_auditor_sees_only_the_outputs(bootstrap: str, secure: security.SecurePaths) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **_as(secure, security.AUDITOR))
    try:
        assert consumer.topics() == {
            topics.OUTCOMES,
            topics.ALERTS,
            topics.REGISTRY,
            topics.SITE_KEYS,
            topics.REBASELINES,
        }
    finally:
        consumer.close()


# --- authentication ---------------------------------------------------------------------------


def _broker_log(home: Path) -> str:
    return kafka.KafkaPaths(home).log.read_text(errors="replace")


def _refusals(home: Path, reason: str) -> int:
    """How often the broker logged refusing a client's authentication for ``reason``."""
    return sum(
        "Failed authentication with /127.0.0.1" in line and reason in line
        for line in _broker_log(home).splitlines()
    )


def test_plaintext_client_is_refused_by_the_secure_listener(
    secure_kafka_stack: manager.UpResult, bootstrap: str
) -> None:
    home = secure_kafka_stack.settings.home
    before = _refusals(home, "SSL handshake failed")
    with pytest.raises(KafkaTimeoutError):
        KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=3000)
    assert _refusals(home, "SSL handshake failed") > before


def test_wrong_password_is_refused_and_never_logged(
    secure_kafka_stack: manager.UpResult,
    bootstrap: str,
    secure: security.SecurePaths,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    home = secure_kafka_stack.settings.home
    wrong = f"not-the-password-{uuid.uuid4().hex}"
    write_secret_file(tmp_path / "wrong.password", wrong.encode())
    impostor = KafkaSecurity(
        protocol="SASL_SSL",
        username=security.site_principal(SECURE_SITE),
        password_file=tmp_path / "wrong.password",
        ca_file=secure.ca_cert,
    )
    before = _refusals(home, "invalid credentials")
    caplog.set_level(logging.DEBUG, logger="kafka")  # kafka-python logs its config at DEBUG
    with pytest.raises(KafkaTimeoutError):
        KafkaAdminClient(
            bootstrap_servers=bootstrap, bootstrap_timeout_ms=3000, **impostor.kafka_python_kwargs()
        )
    assert _refusals(home, "invalid credentials") > before
    assert "sasl_plain_password" in caplog.text
    assert wrong not in caplog.text
    assert wrong not in _broker_log(home)


def test_no_password_is_in_stack_json_or_the_broker_config(
    secure_kafka_stack: manager.UpResult, secure: security.SecurePaths
) -> None:
    home = secure_kafka_stack.settings.home
    written = (
        manager.state_file(home).read_text() + kafka.KafkaPaths(home).server_properties.read_text()
    )
    passwords = [path.read_text().strip() for path in secure.credentials.glob("*.password")]
    assert len(passwords) >= 3
    assert not [password for password in passwords if password in written]


# --- the pipeline in secure mode --------------------------------------------------------------


def test_worker_joins_a_prediction_and_followup_on_the_secure_stack(
    secure_kafka_stack: manager.UpResult,
    bootstrap: str,
    secure: security.SecurePaths,
    tmp_path: Path,
) -> None:
    base = secure_kafka_stack.settings
    assert base.kafka_username == security.WORKER  # what stack.json tells local clients
    settings = base.model_copy(
        update={
            "worker_id": f"{base.worker_id}-{uuid.uuid4().hex[:6]}",
            "worker_metrics_port": free_port(),
        }
    )
    signing_key = site_signing_key(SECURE_SITE)
    publish_site_keys([signing_key.registration(SECURE_SITE)], bootstrap, settings.kafka_security())
    case = f"c-{uuid.uuid4().hex}"
    prediction = make_prediction(case_pseudonym=case, site_id=SECURE_SITE, decision="negative")
    followup = make_followup(case_pseudonym=case, site_id=SECURE_SITE, label="positive")
    site = secure.client_security(security.site_principal(SECURE_SITE))
    log = tmp_path / "worker.log"
    with LocalWorker(settings, log):
        with EventProducer(bootstrap, security=site) as producer:
            producer.deliver([prediction, followup], signer=signing_key)
        outcome = _first_outcome_for(bootstrap, secure, prediction.event_id)
    assert (outcome.label, outcome.followup_event_ids) == ("positive", (followup.event_id,))
    assert settings.kafka_security().password() not in log.read_text(errors="replace")


def _first_outcome_for(
    bootstrap: str, secure: security.SecurePaths, prediction_id: uuid.UUID
) -> Outcome:
    """Read pms.outcomes.v1 as the auditor until the prediction's outcome appears."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **_as(secure, security.AUDITOR)
    )
    try:
        partitions = [
            TopicPartition(topics.OUTCOMES, p)
            for p in consumer.partitions_for_topic(topics.OUTCOMES) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    outcome = decode(Outcome, record.value)
                    if outcome.prediction_event_id == prediction_id:
                        return outcome
    finally:
        consumer.close()
    raise AssertionError("no outcome for the prediction within 90 s")


def test_evidence_sink_stores_outcomes_as_the_worker_principal(
    secure_kafka_stack: manager.UpResult, bootstrap: str, tmp_path: Path
) -> None:
    from evidence.sink import EvidenceSink
    from evidence.store import EvidenceStore
    from postmarket.contracts import encode
    from tests.factories import make_outcome

    worker = secure_kafka_stack.settings.kafka_security()
    device = f"dev-{uuid.uuid4().hex[:8]}"
    outcome = make_outcome("positive", "positive", 0, device_id=device)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **worker.kafka_python_kwargs())
    try:
        producer.send(topics.OUTCOMES, key=b"k", value=encode(outcome)).get(timeout=30)
    finally:
        producer.close(timeout=10)
    with EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}") as store:
        EvidenceSink(store, bootstrap, security=worker).run(until_idle_s=3.0)
        assert store.outcome_count(device) == 1
