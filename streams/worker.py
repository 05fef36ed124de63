"""Run a stream worker: the Faust app, its agents, and the /metrics endpoint."""

from __future__ import annotations

import faust
from prometheus_client import start_http_server

import streams.agents  # noqa: F401 - registers the agents on the app
from streams.app import app, registry, settings


def run(loglevel: str = "info") -> None:
    """Serve /metrics, then run the worker in this process until SIGTERM or Ctrl-C."""
    start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry=registry)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()
