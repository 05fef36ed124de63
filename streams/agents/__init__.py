"""The agents of a stream worker; importing this package registers them on the app."""

from streams.agents import join, lag, monitor, registry

__all__ = ["join", "lag", "monitor", "registry"]
