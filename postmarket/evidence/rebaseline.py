"""Accepting an investigated drift: a ``Rebaseline`` decision on ``pms.rebaselines.v1``.

The label-free drift detectors (``score_drift`` and one ``<acquisition dimension>_drift``
per dimension) compare a stream's predictions with the stream's own first predictions.
Once a drift alert's investigation has accepted the change (a new scanner validated), the
decision tells the workers to rebuild that reference from the predictions that follow, so
the tests look for the next change instead of recurring on this one.

Only those references move. The CUSUMs, the claims tests, the label-free estimates, the
calibration test and the site-vs-fleet comparison test registered claims, and a claim is
changed by registration, never by re-baselining.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from postmarket import topics
from postmarket.contracts.events import Alert, Rebaseline
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_writer import publish_events

if TYPE_CHECKING:
    from postmarket.evidence.views import AlertView

REBASELINE_NAMESPACE = uuid.UUID("179013c8-9031-4c80-b75e-154c534c3457")
"""Fixed forever: a decision's id is derived from its alert's id in this namespace."""

DRIFT_SUFFIX = "_drift"
CLAIM_DETECTOR_MARKS = ("_cusum", "_claims_test", "_estimate", "calibration", "site_vs_fleet")
"""What names a detector that tests a registered claim (streams.performance, fleet_review)."""


class RebaselineRefused(ValueError):
    """The alert's detector has no reference of the stream's own to rebuild."""


def is_reference_drift(detector: str) -> bool:
    """Whether ``detector`` compares a stream with the stream's own first predictions.

    >>> is_reference_drift("kvp_band_drift"), is_reference_drift("sensitivity_cusum")
    (True, False)
    """
    return detector.endswith(DRIFT_SUFFIX)


def is_claim_based(detector: str) -> bool:
    """Whether ``detector`` tests a registered claim (CUSUM, claims test, estimate, ...)."""
    return any(mark in detector for mark in CLAIM_DETECTOR_MARKS)


def rebaseline_refusal(detector: str) -> str | None:
    """Why an alert of ``detector`` cannot be re-baselined; None when it can."""
    if is_reference_drift(detector):
        return None
    if is_claim_based(detector):
        return (
            f"{detector} tests a registered claim, and the claims are registered, not "
            "re-baselined: investigate and resolve the alert, or register a new claim"
        )
    return (
        f"{detector} is not a reference-drift detector: only score_drift and "
        "<acquisition dimension>_drift compare a stream with a reference of its own"
    )


def rebaseline_id(alert_id: uuid.UUID) -> uuid.UUID:
    """The decision's id: the same for every decision on one alert, so a re-run is skipped.

    >>> rebaseline_id(uuid.UUID(int=1)) == rebaseline_id(uuid.UUID(int=1))
    True
    """
    return uuid.uuid5(REBASELINE_NAMESPACE, str(alert_id))


def rebaseline_decision(alert: AlertView | Alert, by: str, why: str, at: datetime) -> Rebaseline:
    """The decision to rebuild the reference of ``alert``'s stream, made by ``by`` at ``at``.

    Raises :class:`RebaselineRefused` when the alert's detector is not a reference-drift
    detector, or ``by`` or ``why`` is blank.
    """
    raised = alert if isinstance(alert, Alert) else alert.alert
    refusal = rebaseline_refusal(raised.detector)
    if refusal is not None:
        raise RebaselineRefused(f"cannot re-baseline alert {raised.alert_id}: {refusal}")
    if not by.strip() or not why.strip():
        raise RebaselineRefused("to re-baseline a stream, say who and why")
    return Rebaseline(
        rebaseline_id=rebaseline_id(raised.alert_id),
        stream=raised.stream,
        alert_id=raised.alert_id,
        decided_by=by,
        reason=why,
        decided_at=at,
    )


def publish_rebaseline(
    decision: Rebaseline, bootstrap: str, security: KafkaSecurity | None = None
) -> None:
    """Produce ``decision`` keyed by its stream (acks=all, idempotent) and wait for the ack.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge it.
    """
    publish_events(
        topics.REBASELINES,
        [(decision.stream.as_key(), decision)],
        bootstrap,
        security,
        client_id="postmarket-rebaseline-publisher",
    )
