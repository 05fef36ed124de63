"""``postmarket dashboards publish`` against a real HTTP server: fails fast, one line, its code.

No Grafana binary is needed: a ``http.server`` in a thread answers as Grafana's API does
(a fixed status, or the three calls a publish makes). The command runs in a subprocess, as
an operator runs it, so its time and its whole output are what they would see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dashboards.build import DASHBOARDS
from launcher.stack.processes import free_port
from postmarket.preflight import ServiceFailure
from postmarket.secrets import write_secret_file

TOKEN = "glsa_" + "not-a-real-token-9876543210"  # built, so no secret scanner trips
FAIL_FAST_S = 15.0
"""What "fails fast" means here: the old command took 8 s and more to print a traceback."""


class GrafanaStandIn(BaseHTTPRequestHandler):
    """Answers every request with ``status``; with 200, as Grafana answers a publish."""

    status = 200
    requests: list[tuple[str, str, str]] = []

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        self.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        if self.status != 200:
            body: object = {"message": "refused by the stand-in"}
        elif self.path.startswith("/api/search"):
            body = []
        elif self.path.startswith("/api/folders/"):
            body = {"uid": self.path.rsplit("/", 1)[-1], "title": "Post-market surveillance"}
        else:
            body = {"status": "success", "url": "/d/published/x"}
        payload = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output for the test


@contextmanager
def serve(status: int) -> Iterator[tuple[str, type[GrafanaStandIn]]]:
    handler = type("Answering", (GrafanaStandIn,), {"status": status, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grafana() -> Iterator[tuple[str, type[GrafanaStandIn]]]:
    with serve(200) as answering:
        yield answering


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "grafana-token"
    write_secret_file(path, f"{TOKEN}\n".encode())
    return path


def publish(
    url: str, token_file: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "postmarket",
            "dashboards",
            "publish",
            "--url",
            url,
            "--token-file",
            str(token_file),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - began


def assert_one_clear_error(done: subprocess.CompletedProcess[str], *said: str) -> None:
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert TOKEN not in output
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) <= 2
    for words in said:
        assert words in done.stderr


def test_publish_uploads_every_dashboard_with_the_bearer_token(
    grafana: tuple[str, type[GrafanaStandIn]], token_file: Path
) -> None:
    url, handler = grafana
    done, _ = publish(url, token_file)
    assert done.returncode == 0, done.stderr
    posts = [path for method, path, _ in handler.requests if method == "POST"]
    assert posts == ["/api/dashboards/db"] * len(DASHBOARDS)
    assert {auth for *_, auth in handler.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in done.stdout + done.stderr


def test_a_refused_token_exits_6_naming_grafana_and_the_fix(token_file: Path) -> None:
    with serve(401) as (url, _):
        done, took = publish(url, token_file)
    assert done.returncode == ServiceFailure.AUTHENTICATION_REFUSED == 6
    assert took < FAIL_FAST_S
    assert_one_clear_error(done, url, "HTTP 401", "service-account token")


def test_a_grafana_server_error_exits_8_and_uploads_nothing(token_file: Path) -> None:
    with serve(500) as (url, handler):
        done, took = publish(url, token_file)
        methods = [method for method, *_ in handler.requests]
    assert done.returncode == ServiceFailure.SERVER_ERROR == 8
    assert took < FAIL_FAST_S
    assert methods == ["GET"]  # the preflight only: nothing half-published
    assert_one_clear_error(done, url, "HTTP 500", "Grafana's log")


def test_nothing_listening_exits_5_within_seconds(token_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done, took = publish(url, token_file, "--connect-timeout", "2")
    assert done.returncode == ServiceFailure.UNREACHABLE == 5
    assert took < FAIL_FAST_S
    assert_one_clear_error(done, url, "not reachable", "connection refused")


def test_a_token_file_others_can_read_is_refused_before_connecting(
    grafana: tuple[str, type[GrafanaStandIn]], token_file: Path
) -> None:
    url, handler = grafana
    token_file.chmod(0o644)
    done, _ = publish(url, token_file)
    assert done.returncode == ServiceFailure.BAD_SETTING == 1
    assert handler.requests == []
    assert_one_clear_error(done, str(token_file), "mode 644", "chmod 600")
