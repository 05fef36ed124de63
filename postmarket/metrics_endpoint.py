"""The /metrics endpoint of every process: loopback by default, optional TLS and basic auth.

prometheus-client's ``start_http_server`` does TLS but not basic auth, so this wraps its
WSGI app with a credentials check and serves it the same way (a threading WSGI server in
a daemon thread). The password and the TLS key are secrets: read from files that only
their owner may read (:func:`postmarket.secrets.read_secret_file`), never from settings
values, and never logged. The TLS handshake runs in the request's thread, so a client
that stalls in it holds up nobody else.

Prometheus scrapes such an endpoint with ``scheme: https``, ``tls_config`` and
``basic_auth`` (``password_file``) in its scrape config; see :mod:`launcher.stack.prometheus`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from postmarket.secrets import SecretFileError, read_secret_file

LOOPBACK = "127.0.0.1"
REALM = "postmarket metrics"
HANDSHAKE_TIMEOUT_S = 10.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MetricsEndpointError(ValueError):
    """The endpoint's TLS or basic-auth settings are incomplete or unusable."""


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where and how a process serves /metrics. Unset TLS and auth mean plain HTTP, open."""

    host: str = LOOPBACK
    port: int = 0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_user: str = ""
    basic_auth_password_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise MetricsEndpointError("metrics TLS needs both a certificate and a key file")
        if bool(self.basic_auth_user) != (self.basic_auth_password_file is not None):
            raise MetricsEndpointError("metrics basic auth needs both a user and a password file")

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


@dataclass
class MetricsServer:
    """A running endpoint; :meth:`close` stops it."""

    server: WSGIServer
    thread: threading.Thread
    endpoint: MetricsEndpoint

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def address(self) -> str:
        """``host:port`` as a scrape target names it."""
        return f"{self.endpoint.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.endpoint.scheme}://{self.address}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def require_basic_auth(app: WsgiApp, user: str, password: bytes) -> WsgiApp:
    """``app`` behind HTTP basic auth: anything without ``user``:``password`` gets 401."""
    expected = user.encode() + b":" + password

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = _credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if given is not None and hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
        )
        return [b"authentication required\n"]

    return guarded


def _credentials(header: str) -> bytes | None:
    """``user:password`` out of a ``Basic`` Authorization header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer) for the certificate chain and its private key."""
    read_secret_file(key_file, "metrics TLS key")  # refuses a key others may read
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as error:
        raise MetricsEndpointError(
            f"cannot load metrics TLS certificate {cert_file} with its key: {error}"
        ) from None
    return context


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Scrapes every few seconds would flood the log."""


def _server_class(context: ssl.SSLContext | None, family: socket.AddressFamily) -> type[WSGIServer]:
    class MetricsWSGIServer(ThreadingWSGIServer):
        address_family = family

        def get_request(self) -> tuple[Any, Any]:
            connection, address = self.socket.accept()
            if context is None:
                return connection, address
            # Wrapped without the handshake here: it runs in the request's own thread.
            wrapped = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
            return wrapped, address

        def finish_request(self, request: Any, client_address: Any) -> None:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(HANDSHAKE_TIMEOUT_S)
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError):
                    return
                request.settimeout(None)
            super().finish_request(request, client_address)

    return MetricsWSGIServer


def serve_metrics(registry: CollectorRegistry, endpoint: MetricsEndpoint) -> MetricsServer:
    """Serve ``registry`` at ``endpoint`` from a daemon thread; raise if misconfigured."""
    app: WsgiApp = make_wsgi_app(registry)
    if endpoint.basic_auth_password_file is not None:
        try:
            password = read_secret_file(endpoint.basic_auth_password_file, "metrics password")
        except SecretFileError as error:
            raise MetricsEndpointError(str(error)) from None
        app = require_basic_auth(app, endpoint.basic_auth_user, password)
    context = None
    if endpoint.tls_cert_file is not None and endpoint.tls_key_file is not None:
        try:
            context = tls_context(endpoint.tls_cert_file, endpoint.tls_key_file)
        except SecretFileError as error:
            raise MetricsEndpointError(str(error)) from None
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    server = make_server(
        endpoint.host,
        endpoint.port,
        app,
        _server_class(context, family),
        handler_class=_SilentHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread, endpoint)
