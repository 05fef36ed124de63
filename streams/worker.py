"""Run a stream worker: the Faust app, its agents, and the /metrics endpoint."""

from __future__ import annotations

import faust
from prometheus_client import start_http_server

import streams.agents  # noqa: F401 - registers the agents on the app
from postmarket.stack.kafka import ensure_topics
from streams.app import app, internal_topics, registry, settings


def run(loglevel: str = "info") -> None:
    """Create the app's internal topics, serve /metrics, then run until SIGTERM or Ctrl-C."""
    ensure_topics(settings.kafka_bootstrap, internal_topics(app))
    start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry=registry)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()
