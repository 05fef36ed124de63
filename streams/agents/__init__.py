"""The agents of a stream worker; importing this package registers them on the app."""

from streams.agents import ingress, join, lag, pooled, rebaselines, registry, stream_metrics

__all__ = ["ingress", "join", "lag", "pooled", "rebaselines", "registry", "stream_metrics"]
