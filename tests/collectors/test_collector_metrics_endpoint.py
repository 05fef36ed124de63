"""The collector's /metrics: loopback by default; basic auth from a 0600 password file."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from collectors.producer import Delivery, EncodedEvent
from collectors.service import Collector
from collectors.settings import CollectorConfigError, CollectorSettings, load_settings
from launcher.stack.processes import free_port
from postmarket.secrets import write_secret_file


class NoBroker:
    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        return []

    def close(self) -> None:
        pass


def _site_key(tmp_path: Path) -> Path:
    key = tmp_path / "site.key"
    write_secret_file(key, b"metrics-test-site-secret-0123456789abcdef")
    return key


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Collector]:
    password = tmp_path / "metrics-password"
    write_secret_file(password, b"s3cret")
    settings = CollectorSettings(
        site_id="site-a",
        pseudonym_key_file=_site_key(tmp_path),
        outbox_path=tmp_path / "outbox.db",
        metrics_port=free_port(),
        metrics_basic_auth_user="prometheus",
        metrics_basic_auth_password_file=password,
    )
    collector = Collector(settings, connect=NoBroker)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 10
    while collector.metrics_address is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield collector
    stop.set()
    runner.join(timeout=30)


def _get(url: str, authorization: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - loopback
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_collector_metrics_bind_loopback_by_default(tmp_path: Path) -> None:
    settings = CollectorSettings(site_id="s", pseudonym_key_file=tmp_path / "k")
    assert settings.metrics_endpoint().host == "127.0.0.1"


def test_collector_refuses_an_unauthenticated_scrape(running: Collector) -> None:
    assert running.metrics_address is not None
    host, port = running.metrics_address
    assert host == "127.0.0.1"
    assert _get(f"http://{host}:{port}/metrics") == 401


def test_collector_serves_an_authenticated_scrape(running: Collector) -> None:
    assert running.metrics_address is not None
    host, port = running.metrics_address
    token = base64.b64encode(b"prometheus:s3cret").decode()
    assert _get(f"http://{host}:{port}/metrics", f"Basic {token}") == 200


def test_metrics_secret_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nsite_id = "s"\npseudonym_key_file = "k"\n'
        'metrics_basic_auth_user = "prometheus"\n'
        'metrics_basic_auth_password_file = "secrets/metrics-password"\n'
        'metrics_tls_cert_file = "tls/metrics.crt"\nmetrics_tls_key_file = "tls/metrics.key"\n'
    )
    settings = load_settings(config, environ={})
    endpoint = settings.metrics_endpoint()
    assert endpoint.basic_auth_password_file == tmp_path / "secrets" / "metrics-password"
    assert endpoint.tls_key_file == tmp_path / "tls" / "metrics.key"
    assert endpoint.scheme == "https"


def test_a_user_without_a_password_file_is_a_configuration_error(tmp_path: Path) -> None:
    environment = {
        "POSTMARKET_SITE_ID": "s",
        "POSTMARKET_PSEUDONYM_KEY_FILE": str(tmp_path / "k"),
        "POSTMARKET_METRICS_BASIC_AUTH_USER": "prometheus",
    }
    with pytest.raises(CollectorConfigError, match="password file") as refused:
        load_settings(environ=environment)
    assert "POSTMARKET_METRICS_BASIC_AUTH_PASSWORD_FILE" in str(refused.value)
