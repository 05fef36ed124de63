"""The alert lifecycle: open -> acknowledged -> resolved, and nothing else.

A regulator reads an alert's history as evidence of how the manufacturer responded, so a
resolved alert never reopens and an open alert is acknowledged (someone owns it) before
it is resolved. Pure: the store calls :func:`next_status` before it writes.

One persistent problem is one alert: while a stream's detector has an unresolved alert,
its next signals are stored as recurrences of that alert, not as new alerts to triage.
Once the alert is resolved, the next signal opens a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import get_args

from postmarket.contracts.events import Severity


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


UNRESOLVED = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
"""The statuses of an alert whose stream and detector's next signals recur it."""

SEVERITIES: tuple[Severity, ...] = get_args(Severity)
"""Least to most severe, as the contract lists them."""


def highest_severity(severities: Iterable[str]) -> Severity:
    """The most severe of an alert's and its recurrences' severities.

    >>> highest_severity(["warning", "critical", "info"])
    'critical'
    """
    return SEVERITIES[max(SEVERITIES.index(severity) for severity in severities)]


class AlertAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class IllegalTransition(ValueError):
    """An action the alert's current status does not allow."""


TRANSITIONS: dict[tuple[AlertStatus, AlertAction], AlertStatus] = {
    (AlertStatus.OPEN, AlertAction.ACKNOWLEDGE): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.ACKNOWLEDGED, AlertAction.RESOLVE): AlertStatus.RESOLVED,
}


def next_status(current: AlertStatus, action: AlertAction) -> AlertStatus:
    """The status after ``action``, or :class:`IllegalTransition` saying why not.

    >>> next_status(AlertStatus.OPEN, AlertAction.ACKNOWLEDGE)
    <AlertStatus.ACKNOWLEDGED: 'acknowledged'>
    """
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        pass
    if current is AlertStatus.RESOLVED:
        why = "it is already resolved, and a resolved alert stays resolved"
    elif action is AlertAction.ACKNOWLEDGE:
        why = "it is already acknowledged"
    else:
        why = "it is still open: acknowledge it first"
    raise IllegalTransition(
        f"cannot {action.value} the alert: {why} (lifecycle: open -> acknowledged -> resolved)"
    )
