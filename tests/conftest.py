"""Session fixtures that run the real services (Kafka, Prometheus, PostgreSQL) once per run.

Only tests that ask for them (integration tests) start anything. Each fixture uses its own
temporary home under /tmp, stops every process it started when the session ends, and keeps
that home (logs included) when a test failed, printing where it is.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.stack import manager, postgres
from launcher.stack.processes import free_port, stop_group
from postmarket.config import Settings


def make_stack_home(prefix: str) -> Path:
    """A fresh home under /tmp that an unprivileged PostgreSQL user can traverse.

    pytest's own tmp dirs are 0700 (root only), which the ``postgres`` system user cannot
    enter; short /tmp paths also keep the PostgreSQL socket path under its 107-byte limit.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o755)
    return home


def release_stack_home(request: pytest.FixtureRequest, home: Path) -> None:
    """Delete ``home`` after a clean session; keep it, and say where, if anything failed."""
    if request.session.testsfailed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        message = f"stack home kept for inspection (logs in {home / 'logs'})"
        if reporter is not None:
            reporter.write_line(message)
        else:
            print(message)
        return
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_home_factory() -> Callable[[str], Path]:
    """Factory of fresh stack homes (see :func:`make_stack_home`); callers clean up."""
    return make_stack_home


@pytest.fixture(scope="session")
def kafka_stack(request: pytest.FixtureRequest) -> Iterator[manager.UpResult]:
    """Kafka + Prometheus started by the stack manager; ``.settings`` points at them."""
    home = make_stack_home("pms-kafka-stack-")
    try:
        result = manager.up(Settings(home=home))
        yield result
    finally:
        manager.down(Settings(home=home))
        release_stack_home(request, home)


SECURE_SITE = "secure-site-a"
"""The site whose principal the secure stack is started with (``up --secure --site``)."""


@pytest.fixture(scope="session")
def secure_kafka_stack(request: pytest.FixtureRequest) -> Iterator[manager.UpResult]:
    """``stack up --secure``: SASL_SSL, ACLs and quotas; principals worker, auditor and
    ``site-secure-site-a``; ``.settings`` connect as the worker principal."""
    home = make_stack_home("pms-secure-stack-")
    try:
        result = manager.up(Settings(home=home), secure=True, sites=[SECURE_SITE])
        yield result
    finally:
        manager.down(Settings(home=home))
        release_stack_home(request, home)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL server started through launcher.stack.postgres; yields its URL."""
    home = make_stack_home("pms-postgres-")
    paths = postgres.PostgresPaths(home)
    user = postgres.service_user()
    postgres.init_cluster(paths, user)
    record = postgres.start(paths, free_port(), user)
    try:
        postgres.wait_until_ready(record, paths)
        postgres.ensure_database(record.port)
        yield postgres.database_url(record.port)
    finally:
        stop_group(record.pid, signal.SIGINT, timeout=30.0)
        release_stack_home(request, home)
