"""The agents of a stream worker; importing this package registers them on the app."""

from streams.agents import ingress, join, lag, monitor, pooled, registry

__all__ = ["ingress", "join", "lag", "monitor", "pooled", "registry"]
