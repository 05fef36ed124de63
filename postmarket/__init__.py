"""Shared kernel of the post-market surveillance pipeline: contracts, topics, configuration."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("postmarket-surveillance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from postmarket.kafka_logs import quiet_closed_transports

# Every process of the pipeline imports the kernel, and any may close a kafka-python client.
quiet_closed_transports()
