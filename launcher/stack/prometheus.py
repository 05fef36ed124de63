"""Prometheus for the local stack: Debian's binary, our config, our data dir, a free port.

Scrape targets are discovered from files (``file_sd_configs``) rather than written into
the config, so a worker or collector that starts later announces itself by dropping a
JSON file (:mod:`postmarket.scrape_targets`); Prometheus picks it up without a reload.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.stack.processes import (
    LOOPBACK,
    ProcessRecord,
    StackError,
    is_running,
    spawn_detached,
    tail,
)
from postmarket.scrape_targets import (
    EVIDENCE_JOB,
    PIPELINE_JOBS,
    WORKER_JOB,
    announce_scrape_target,
    atomic_write_text,
    local_stack_targets_dir,
)

if TYPE_CHECKING:
    from postmarket.config import Settings

SCRAPE_INTERVAL = "5s"
PROMETHEUS_BINARY = "/usr/bin/prometheus"
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class PrometheusPaths:
    """Where Prometheus keeps its config, targets, data and log inside the stack home."""

    home: Path

    @property
    def config_dir(self) -> Path:
        return self.home / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "prometheus.yml"

    @property
    def data_dir(self) -> Path:
        return self.config_dir / "data"

    @property
    def log(self) -> Path:
        return self.home / "logs" / "prometheus.log"

    def targets_dir(self, job: str) -> Path:
        return local_stack_targets_dir(self.home, job)


@dataclass(frozen=True)
class ScrapeTarget:
    """One target as Prometheus sees it."""

    job: str
    url: str
    health: str
    last_error: str = ""


@dataclass(frozen=True)
class ScrapeSecurity:
    """How Prometheus reaches a job's /metrics served with TLS and/or basic auth.

    ``ca_file`` verifies the endpoint's certificate (a self-signed certificate is its own
    CA); the password stays in ``password_file``, which Prometheus reads itself.
    """

    ca_file: Path | None = None
    username: str = ""
    password_file: Path | None = None

    @property
    def is_plain(self) -> bool:
        return self.ca_file is None and self.password_file is None

    def render(self, indent: str = "    ") -> list[str]:
        lines = []
        if self.ca_file is not None:
            lines += [
                f"{indent}scheme: https",
                f"{indent}tls_config:",
                f"{indent}  ca_file: {json.dumps(str(self.ca_file))}",
            ]
        if self.password_file is not None:
            lines += [
                f"{indent}basic_auth:",
                f"{indent}  username: {json.dumps(self.username)}",
                f"{indent}  password_file: {json.dumps(str(self.password_file))}",
            ]
        return lines


def central_scrape_security(settings: Settings) -> dict[str, ScrapeSecurity]:
    """The worker's and evidence sink's endpoint security from their shared Settings."""
    scrape = ScrapeSecurity(
        ca_file=settings.metrics_tls_cert_file,
        username=settings.metrics_basic_auth_user,
        password_file=settings.metrics_basic_auth_password_file,
    )
    return {} if scrape.is_plain else {WORKER_JOB: scrape, EVIDENCE_JOB: scrape}


def render_config(
    paths: PrometheusPaths,
    own_port: int,
    rule_files: Sequence[Path] = (),
    scrape_security: Mapping[str, ScrapeSecurity] | None = None,
) -> str:
    """``prometheus.yml``: Prometheus itself plus one file-discovered job per pipeline role,
    and the project's alerting rules when given. A job in ``scrape_security`` is scraped
    over HTTPS and/or with basic auth (its endpoint is configured so).

    The output is YAML written by hand (JSON-quoted strings are valid YAML), which spares a
    YAML dependency for a file this small.
    """
    lines = [
        "# Written by launcher.stack.prometheus on every `stack up`; edits are overwritten.",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
    ]
    if rule_files:
        lines += ["rule_files:", *(f"  - {json.dumps(str(path))}" for path in rule_files)]
    lines += [
        "scrape_configs:",
        "  - job_name: prometheus",
        "    static_configs:",
        f"      - targets: [{json.dumps(f'{LOOPBACK}:{own_port}')}]",
    ]
    for job in PIPELINE_JOBS:
        lines.append(f"  - job_name: {json.dumps(job)}")
        lines += (scrape_security or {}).get(job, ScrapeSecurity()).render()
        lines += [
            "    file_sd_configs:",
            f"      - files: [{json.dumps(str(paths.targets_dir(job) / '*.json'))}]",
            "        refresh_interval: 5s",
        ]
    return "\n".join(lines) + "\n"


def register_scrape_target(
    home: Path, job: str, address: str, labels: dict[str, str] | None = None
) -> Path:
    """Announce a ``host:port`` serving /metrics to the stack's Prometheus; return the file."""
    return announce_scrape_target(PrometheusPaths(home).targets_dir(job), address, labels)


def alert_rule_files(deploy: Path) -> list[Path]:
    """The alerting rules shipped in ``deploy/prometheus/rules`` (none outside a checkout)."""
    return sorted((deploy / "prometheus" / "rules").glob("*.yml"))


def write_config(
    paths: PrometheusPaths,
    own_port: int,
    rule_files: Sequence[Path] = (),
    scrape_security: Mapping[str, ScrapeSecurity] | None = None,
) -> None:
    """Write prometheus.yml and make sure every job's target directory exists."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    for job in PIPELINE_JOBS:
        paths.targets_dir(job).mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        paths.config_file, render_config(paths, own_port, rule_files, scrape_security)
    )


def prometheus_binary() -> str:
    """Debian's Prometheus binary, or one on PATH."""
    if Path(PROMETHEUS_BINARY).is_file():
        return PROMETHEUS_BINARY
    found = shutil.which("prometheus")
    if found is None:
        raise StackError("prometheus is not installed; run: apt-get install -y prometheus")
    return found


def start(paths: PrometheusPaths, port: int) -> ProcessRecord:
    """Start Prometheus detached on ``127.0.0.1:port`` (not yet ready)."""
    argv = [
        prometheus_binary(),
        f"--config.file={paths.config_file}",
        f"--storage.tsdb.path={paths.data_dir}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",
    ]
    pid = spawn_detached(argv, paths.log, cwd=paths.config_dir)
    return ProcessRecord(
        name="prometheus",
        pid=pid,
        port=port,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log=str(paths.log),
    )


def base_url(port: int) -> str:
    """The URL clients (and ``prometheus_url``) use."""
    return f"http://{LOOPBACK}:{port}"


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    # The scheme is checked above, so urlopen cannot be steered to file:// or ftp://.
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        return int(response.status), response.read()


def is_ready(url: str, timeout: float = 2.0) -> bool:
    """Whether Prometheus answers 200 on ``/-/ready`` (TSDB open, serving queries)."""
    try:
        status, _ = _get(f"{url.rstrip('/')}/-/ready", timeout)
    except (OSError, ValueError):
        return False
    return status == 200


def wait_until_ready(
    record: ProcessRecord, paths: PrometheusPaths, timeout: float = READY_TIMEOUT
) -> None:
    """Block until ``/-/ready`` answers 200; fail fast with the log if the process exits."""
    url = base_url(record.port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(record.pid):
            raise StackError(
                f"Prometheus (pid {record.pid}) exited during startup; last lines of "
                f"{paths.log}:\n{tail(paths.log)}"
            )
        if is_ready(url):
            return
        time.sleep(0.3)
    raise StackError(
        f"Prometheus at {url} not ready after {timeout:.0f} s; last lines of "
        f"{paths.log}:\n{tail(paths.log)}"
    )


def targets_from_api(payload: Mapping[str, Any]) -> list[ScrapeTarget]:
    """Scrape targets out of a ``/api/v1/targets`` answer, sorted by job then URL."""
    active = payload.get("data", {}).get("activeTargets", [])
    targets = [
        ScrapeTarget(
            job=str(item.get("labels", {}).get("job", item.get("scrapePool", ""))),
            url=str(item.get("scrapeUrl", "")),
            health=str(item.get("health", "unknown")),
            last_error=str(item.get("lastError", "")),
        )
        for item in active
    ]
    return sorted(targets, key=lambda target: (target.job, target.url))


def scrape_targets(url: str, timeout: float = 5.0) -> list[ScrapeTarget]:
    """The active scrape targets of the Prometheus at ``url`` (job, URL, health)."""
    try:
        status, body = _get(f"{url.rstrip('/')}/api/v1/targets?state=active", timeout)
    except (OSError, ValueError) as error:
        raise StackError(f"cannot list Prometheus targets at {url}: {error}") from error
    if status != 200:
        raise StackError(f"Prometheus at {url} answered HTTP {status} for /api/v1/targets")
    return targets_from_api(json.loads(body))
