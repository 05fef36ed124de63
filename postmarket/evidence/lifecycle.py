"""The alert lifecycle: open -> acknowledged -> resolved, and nothing else.

A regulator reads an alert's history as evidence of how the manufacturer responded, so a
resolved alert never reopens and an open alert is acknowledged (someone owns it) before
it is resolved. Pure: the store calls :func:`next_status` before it writes.
"""

from __future__ import annotations

from enum import StrEnum


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


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
