"""The local stack's Prometheus scrapes TLS / basic-auth /metrics with the matching config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from launcher.stack import prometheus
from launcher.stack.prometheus import (
    PrometheusPaths,
    ScrapeSecurity,
    central_scrape_security,
    render_config,
)
from postmarket.config import Settings
from postmarket.scrape_targets import COLLECTOR_JOB, EVIDENCE_JOB, WORKER_JOB


def _jobs(text: str) -> dict[str, dict[str, object]]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def test_plain_endpoints_are_scraped_over_plain_http(tmp_path: Path) -> None:
    jobs = _jobs(render_config(PrometheusPaths(tmp_path), 9090))
    assert "scheme" not in jobs[WORKER_JOB]
    assert "basic_auth" not in jobs[WORKER_JOB]


def test_worker_and_sink_jobs_carry_tls_and_basic_auth_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        metrics_tls_cert_file=tmp_path / "metrics.crt",
        metrics_tls_key_file=tmp_path / "metrics.key",
        metrics_basic_auth_user="prometheus",
        metrics_basic_auth_password_file=tmp_path / "metrics-password",
    )
    text = render_config(PrometheusPaths(tmp_path), 9090, (), central_scrape_security(settings))
    jobs = _jobs(text)
    for job in (WORKER_JOB, EVIDENCE_JOB):
        assert jobs[job]["scheme"] == "https"
        assert jobs[job]["tls_config"] == {"ca_file": str(tmp_path / "metrics.crt")}
        assert jobs[job]["basic_auth"] == {
            "username": "prometheus",
            "password_file": str(tmp_path / "metrics-password"),
        }
    assert "basic_auth" not in jobs[COLLECTOR_JOB]  # collectors have their own settings
    assert "correct horse" not in text  # only the file's path, never a password


def test_plain_settings_add_no_scrape_security(tmp_path: Path) -> None:
    assert central_scrape_security(Settings(home=tmp_path)) == {}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_secured_config(tmp_path: Path) -> None:
    for name in ("metrics.crt", "metrics-password"):
        (tmp_path / name).write_text("placeholder\n")
    security = ScrapeSecurity(tmp_path / "metrics.crt", "prometheus", tmp_path / "metrics-password")
    paths = PrometheusPaths(tmp_path)
    prometheus.write_config(paths, 9090, (), {WORKER_JOB: security})
    result = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(paths.config_file)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
