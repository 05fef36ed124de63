"""The Kafka commands and their preflight on the real broker: what works, and a missing topic."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from launcher.stack import security
from postmarket import topics
from postmarket.contracts.events import site_key_id
from postmarket.kafka_security import KafkaSecurity
from postmarket.preflight import CONNECT_TIMEOUT_S, ServiceFailure, ServiceProblem, check_kafka
from postmarket.secrets import write_secret_file
from tests.conftest import SECURE_SITE

pytestmark = pytest.mark.integration


def postmarket(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "postmarket", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **environment},
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done


def test_the_preflight_passes_on_a_broker_with_the_topics(kafka_stack: Any) -> None:
    began = time.monotonic()
    check_kafka(
        kafka_stack.settings.kafka_bootstrap,
        KafkaSecurity(),
        topics=[topics.SITE_KEYS, topics.REGISTRY],
    )
    assert time.monotonic() - began < CONNECT_TIMEOUT_S


def test_a_missing_topic_is_named_with_how_to_create_it(kafka_stack: Any) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    with pytest.raises(ServiceProblem) as missing:
        check_kafka(bootstrap, KafkaSecurity(), topics=["pms.not-declared.v1", topics.REGISTRY])
    assert missing.value.failure is ServiceFailure.TOPIC_MISSING
    assert str(missing.value).startswith(f"Kafka at {bootstrap} has no topic pms.not-declared.v1")
    assert "postmarket topics create" in str(missing.value)


def test_site_keys_register_list_revoke_with_bootstrap(kafka_stack: Any) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    site = f"site-{uuid.uuid4().hex[:8]}"
    raw = os.urandom(32)
    key_id = site_key_id(raw)
    public_key = base64.b64encode(raw).decode()

    registered = postmarket(
        "site-keys",
        "register",
        "--site",
        site,
        "--public-key",
        public_key,
        "--bootstrap",
        bootstrap,
    )
    assert registered.returncode == 0, registered.stderr
    listed = postmarket("site-keys", "list", "--bootstrap", bootstrap)
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(f"{site}\t{key_id}\t") for line in listed.stdout.splitlines())

    revoked = postmarket(
        "site-keys", "revoke", "--site", site, "--key-id", key_id, "--bootstrap", bootstrap
    )
    assert revoked.returncode == 0, revoked.stderr
    mine = [
        line
        for line in postmarket("site-keys", "list", "--bootstrap", bootstrap).stdout.splitlines()
        if line.startswith(f"{site}\t")
    ]
    assert len(mine) == 1 and "\trevoked " in mine[0]


def test_a_wrong_kafka_password_exits_6_saying_the_broker_refused_it(
    secure_kafka_stack: Any, tmp_path: Path
) -> None:
    bootstrap = secure_kafka_stack.settings.kafka_bootstrap
    wrong = f"not-the-password-{uuid.uuid4().hex}"
    write_secret_file(tmp_path / "wrong.password", wrong.encode())
    began = time.monotonic()
    done = postmarket(
        "site-keys",
        "list",
        "--bootstrap",
        bootstrap,
        POSTMARKET_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        POSTMARKET_KAFKA_USERNAME=security.site_principal(SECURE_SITE),
        POSTMARKET_KAFKA_PASSWORD_FILE=str(tmp_path / "wrong.password"),
        POSTMARKET_KAFKA_CA_FILE=str(
            security.SecurePaths(secure_kafka_stack.settings.home).ca_cert
        ),
    )
    assert done.returncode == ServiceFailure.AUTHENTICATION_REFUSED == 6, done.stderr
    assert time.monotonic() - began < 15.0
    assert done.stderr.startswith(f"error: Kafka at {bootstrap} refused this client as SASL_SSL")
    assert len(done.stderr.strip().splitlines()) <= 2
    assert wrong not in done.stdout + done.stderr
