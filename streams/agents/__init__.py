"""The agents of a stream worker; importing this package registers them on the app."""

from streams.agents import (
    case_backlog,
    garbage,
    ingress,
    join,
    lag,
    pooled,
    quiet_partitions,
    rebaselines,
    registry,
    stream_metrics,
)

__all__ = [
    "case_backlog",
    "garbage",
    "ingress",
    "join",
    "lag",
    "pooled",
    "quiet_partitions",
    "rebaselines",
    "registry",
    "stream_metrics",
]
