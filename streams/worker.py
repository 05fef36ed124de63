"""Run a stream worker: the Faust app, its agents, and the /metrics endpoint."""

from __future__ import annotations

import atexit
import cProfile
import os

import faust

import streams.agents  # noqa: F401 - registers the agents on the app
from postmarket.metrics_endpoint import serve_metrics
from postmarket.topic_admin import ensure_topics, require_topics
from postmarket.topics import pipeline_topics
from streams.app import app, internal_topics, registry, settings
from streams.gc_tuning import tune_garbage_collection

PROFILE_ENV = "POSTMARKET_WORKER_PROFILE"
"""Set to a file path to profile the whole worker (cProfile) and write the stats there at
exit; off unless set. For finding hot spots under load (bench/bench_pipeline.py)."""


def run(loglevel: str = "info") -> None:
    """Check the pipeline's topics, create the app's internal ones, serve /metrics, then run
    until SIGTERM or Ctrl-C.

    A missing pipeline topic (a release that adds one, deployed before its topics job ran)
    or one with another partition count stops the worker with a message naming it.
    """
    security = settings.kafka_security()
    require_topics(
        settings.kafka_bootstrap, pipeline_topics(settings.topic_partitions), security=security
    )
    ensure_topics(settings.kafka_bootstrap, internal_topics(app), security=security)
    endpoint = settings.metrics_endpoint(settings.worker_metrics_host, settings.worker_metrics_port)
    serve_metrics(registry, endpoint)
    # Faust creates only the last level of its data directory.
    settings.worker_data_path.mkdir(parents=True, exist_ok=True)
    tune_garbage_collection()
    _profile_if_asked(os.environ.get(PROFILE_ENV))
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


def _profile_if_asked(stats_file: str | None) -> None:
    if not stats_file:
        return
    profiler = cProfile.Profile()
    atexit.register(profiler.dump_stats, stats_file)
    atexit.register(profiler.disable)  # atexit runs last-registered first
    profiler.enable()
