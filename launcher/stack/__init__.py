"""The local stack: real Apache Kafka, Prometheus and (optionally) PostgreSQL on 127.0.0.1.

``postmarket stack up|status|down`` (see :mod:`launcher.stack.cli`) drives
:mod:`launcher.stack.manager`; each service's configuration and readiness check lives in
its own module. State, logs and caches stay in the settings' ``home`` directory.
"""

from __future__ import annotations

from launcher.stack.prometheus import register_scrape_target

__all__ = ["register_scrape_target"]
