"""What the evidence store refuses: each error's message says why."""

from __future__ import annotations


class EvidenceError(Exception):
    """A request the evidence store cannot honour; the message says why."""


class NotFound(EvidenceError):
    pass


class AlreadyExists(EvidenceError):
    pass


class AmbiguousAlertId(NotFound):
    """A short alert id that more than one alert or recurrence starts with."""
