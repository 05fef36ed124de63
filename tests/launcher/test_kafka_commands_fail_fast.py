"""Every command that talks to Kafka, with no broker there: seconds, one line, exit 5.

Before the preflight, ``registry publish`` waited 34 s and printed the error type twice,
``site-keys list`` printed a 175-line traceback after 32 s and ``topics create`` one after
65 s. Each command runs in a subprocess, as an operator runs it, so its time and its whole
output are what they would see.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.stack.processes import free_port
from postmarket.preflight import ServiceFailure

FAIL_FAST_S = 15.0
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
KAFKA_COMMANDS = {
    "site-keys list": ["site-keys", "list"],
    "site-keys register": ["site-keys", "register", "--site", "h1", "--public-key", PUBLIC_KEY],
    "site-keys revoke": ["site-keys", "revoke", "--site", "h1", "--key-id", "ed25519-00"],
    "topics create": ["topics", "create"],
    "topics rekey-by-site": ["topics", "rekey-by-site"],
    "registry publish": ["registry", "publish"],  # --url of a store with a device: added below
}


def run(args: list[str], **environment: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "postmarket", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **environment},
    )
    return done, time.monotonic() - began


@pytest.fixture
def registry_store(tmp_path: Path) -> str:
    """A SQLite evidence store with one device version, so publish gets to Kafka."""
    from evidence.store import EvidenceStore

    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    with EvidenceStore(url) as store:
        store.add_device("dr-screen", tasks=["referable_dr"], actor="qa-lead")
        store.add_version("dr-screen", "1.0.0.0", status="registered", actor="qa-lead")
    return url


def command(name: str, store_url: str) -> list[str]:
    extra = ["--url", store_url] if name == "registry publish" else []
    return [*KAFKA_COMMANDS[name], *extra]


def assert_one_clear_error(done: subprocess.CompletedProcess[str], *said: str) -> None:
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2, done.stderr
    for words in said:
        assert words in done.stderr


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """host:port of a TCP server that accepts connections and never answers (not Kafka)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for connection in accepted:
            connection.close()


@pytest.mark.parametrize("name", KAFKA_COMMANDS)
def test_no_broker_fails_within_seconds_naming_it_and_how_to_start_it(
    name: str, registry_store: str
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    done, took = run([*command(name, registry_store), "--bootstrap", bootstrap])
    assert done.returncode == ServiceFailure.UNREACHABLE == 5, done.stderr
    assert took < FAIL_FAST_S
    assert_one_clear_error(done, f"Kafka at {bootstrap} is not reachable", "postmarket stack up")


@pytest.mark.parametrize("name", KAFKA_COMMANDS)
def test_without_bootstrap_the_configured_broker_is_used(name: str, registry_store: str) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    done, _ = run(command(name, registry_store), POSTMARKET_KAFKA_BOOTSTRAP=bootstrap)
    assert done.returncode == ServiceFailure.UNREACHABLE, done.stderr
    assert_one_clear_error(done, f"Kafka at {bootstrap}")


def test_a_listener_that_is_not_kafka_fails_after_the_connect_timeout(
    silent_listener: str,
) -> None:
    done, took = run(
        ["site-keys", "list", "--bootstrap", silent_listener, "--connect-timeout", "1"]
    )
    assert done.returncode == ServiceFailure.UNREACHABLE, done.stderr
    assert took < FAIL_FAST_S
    assert_one_clear_error(done, f"Kafka at {silent_listener} accepted a connection")


# registry publish is left out: its catch-all already refused such a file in one line.
@pytest.mark.parametrize("name", [name for name in KAFKA_COMMANDS if name != "registry publish"])
def test_a_kafka_password_file_others_can_read_is_refused(
    name: str, registry_store: str, tmp_path: Path
) -> None:
    password_file = tmp_path / "kafka.password"
    password = "correct-horse-battery-" + "staple"
    password_file.write_text(password)
    password_file.chmod(0o644)
    done, _ = run(
        [*command(name, registry_store), "--bootstrap", f"127.0.0.1:{free_port()}"],
        POSTMARKET_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        POSTMARKET_KAFKA_USERNAME="manufacturer",
        POSTMARKET_KAFKA_PASSWORD_FILE=str(password_file),
    )
    assert done.returncode == ServiceFailure.BAD_SETTING == 1, done.stderr
    assert password not in done.stdout + done.stderr
    assert_one_clear_error(done, str(password_file), "chmod 600")
