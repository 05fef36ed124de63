"""/metrics endpoints: loopback by default, basic auth and TLS when configured."""

from __future__ import annotations

import base64
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from postmarket.config import Settings
from postmarket.metrics_endpoint import (
    MetricsEndpoint,
    MetricsEndpointError,
    MetricsServer,
    serve_metrics,
)
from postmarket.secrets import write_secret_file
from tests.tls_certificates import self_signed_certificate

Serve = Callable[[MetricsEndpoint], MetricsServer]
USER = "prometheus"
PASSWORD = b"correct horse battery staple"


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("postmarket_probe", "A sample to find in the scrape.", registry=registry).inc()
    return registry


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics-password"
    write_secret_file(path, PASSWORD + b"\n")
    return path


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its 0600 key."""
    return self_signed_certificate(tmp_path, "metrics")


@pytest.fixture
def serve(registry: CollectorRegistry) -> Iterator[Serve]:
    servers: list[MetricsServer] = []

    def start(endpoint: MetricsEndpoint) -> MetricsServer:
        server = serve_metrics(registry, endpoint)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def scrape(
    url: str, auth: tuple[str, bytes] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - our own loopback endpoint
    if auth is not None:
        token = base64.b64encode(auth[0].encode() + b":" + auth[1]).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_endpoint_binds_loopback_unless_configured() -> None:
    assert MetricsEndpoint().host == "127.0.0.1"
    settings = Settings()
    assert settings.worker_metrics_host == "127.0.0.1"
    assert settings.evidence_metrics_host == "127.0.0.1"


def test_plain_endpoint_serves_metrics(serve: Serve) -> None:
    server = serve(MetricsEndpoint())
    status, body = scrape(server.url)
    assert status == 200
    assert "postmarket_probe_total 1.0" in body


def test_unauthenticated_scrape_is_refused_with_401(serve: Serve, password_file: Path) -> None:
    endpoint = MetricsEndpoint(basic_auth_user=USER, basic_auth_password_file=password_file)
    server = serve(endpoint)
    status, body = scrape(server.url)
    assert status == 401
    assert "postmarket_probe" not in body


def test_wrong_password_is_refused_with_401(serve: Serve, password_file: Path) -> None:
    endpoint = MetricsEndpoint(basic_auth_user=USER, basic_auth_password_file=password_file)
    server = serve(endpoint)
    assert scrape(server.url, (USER, b"guess"))[0] == 401
    assert scrape(server.url, ("someone", PASSWORD))[0] == 401


def test_authenticated_scrape_gets_the_metrics(serve: Serve, password_file: Path) -> None:
    endpoint = MetricsEndpoint(basic_auth_user=USER, basic_auth_password_file=password_file)
    server = serve(endpoint)
    status, body = scrape(server.url, (USER, PASSWORD))
    assert status == 200
    assert "postmarket_probe_total 1.0" in body


def test_tls_handshake_verifies_against_the_generated_certificate(
    serve: Serve, certificate: tuple[Path, Path]
) -> None:
    cert_file, key_file = certificate
    server = serve(MetricsEndpoint(tls_cert_file=cert_file, tls_key_file=key_file))
    assert server.url.startswith("https://127.0.0.1:")
    client = ssl.create_default_context(cafile=str(cert_file))
    status, body = scrape(server.url, context=client)
    assert status == 200
    assert "postmarket_probe_total 1.0" in body


def test_tls_endpoint_refuses_plain_http(serve: Serve, certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    server = serve(MetricsEndpoint(tls_cert_file=cert_file, tls_key_file=key_file))
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        scrape(server.url.replace("https://", "http://"))


def test_tls_and_basic_auth_together(
    serve: Serve, certificate: tuple[Path, Path], password_file: Path
) -> None:
    cert_file, key_file = certificate
    endpoint = MetricsEndpoint(
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        basic_auth_user=USER,
        basic_auth_password_file=password_file,
    )
    server = serve(endpoint)
    client = ssl.create_default_context(cafile=str(cert_file))
    assert scrape(server.url, context=client)[0] == 401
    assert scrape(server.url, (USER, PASSWORD), context=client)[0] == 200


def test_a_password_file_others_can_read_is_refused(
    registry: CollectorRegistry, password_file: Path
) -> None:
    os.chmod(password_file, 0o644)
    endpoint = MetricsEndpoint(basic_auth_user=USER, basic_auth_password_file=password_file)
    with pytest.raises(MetricsEndpointError, match="accessible to other users"):
        serve_metrics(registry, endpoint)


def test_a_tls_key_others_can_read_is_refused(
    registry: CollectorRegistry, certificate: tuple[Path, Path]
) -> None:
    cert_file, key_file = certificate
    os.chmod(key_file, 0o640)
    with pytest.raises(MetricsEndpointError, match="accessible to other users"):
        serve_metrics(registry, MetricsEndpoint(tls_cert_file=cert_file, tls_key_file=key_file))


def test_half_configured_tls_or_auth_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MetricsEndpointError, match="certificate and a key"):
        MetricsEndpoint(tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(MetricsEndpointError, match="user and a password"):
        MetricsEndpoint(basic_auth_user=USER)


def test_settings_carry_tls_and_auth_to_the_worker_endpoint(tmp_path: Path) -> None:
    settings = Settings(
        metrics_tls_cert_file=tmp_path / "c.pem",
        metrics_tls_key_file=tmp_path / "k.pem",
        metrics_basic_auth_user=USER,
        metrics_basic_auth_password_file=tmp_path / "pw",
    )
    endpoint = settings.metrics_endpoint(settings.worker_metrics_host, 9999)
    assert (endpoint.host, endpoint.port, endpoint.scheme) == ("127.0.0.1", 9999, "https")
    assert endpoint.basic_auth_password_file == tmp_path / "pw"
