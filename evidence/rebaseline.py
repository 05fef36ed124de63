"""Decisions on a stream once an alert on it is investigated, on ``pms.rebaselines.v1``.

Accepting an investigated drift (a ``Rebaseline`` of scope ``reference``). The label-free
drift detectors (``score_drift`` and one ``<acquisition dimension>_drift`` per dimension)
compare a stream's predictions with the stream's own first predictions. Once a drift
alert's investigation has accepted the change (a new scanner validated), the decision tells
the workers to rebuild that reference from the predictions that follow, so the tests look
for the next change instead of recurring on this one.

Only those references move. The CUSUMs, the claims tests, the label-free estimates, the
calibration test and the site-vs-fleet comparison test registered claims, and a claim is
changed by registration, never by re-baselining.

Closing a reviewed claim-based alert (scope ``review``). A claims test that rejected stays
rejected, for the rest of its surveillance year, until a decision reaches its stream; once a
claim-based alert of a site's stream is reviewed and resolved, the review decision tells the
workers to restart that stream's rejected claims tests (each a new test, paid for by the
fleet budget's alpha) and the CUSUMs that alarmed since. It moves no reference and changes no
claim. The pooled stage (site ``all-sites``) has no stream of its own to restart.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from postmarket import topics
from postmarket.contracts.events import Alert, Rebaseline, RebaselineScope
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_writer import publish_events

if TYPE_CHECKING:
    from evidence.views import AlertView

REBASELINE_NAMESPACE = uuid.UUID("179013c8-9031-4c80-b75e-154c534c3457")
"""Fixed forever: a decision's id is derived from its alert's id in this namespace."""
REVIEW_NAMESPACE = uuid.UUID("0539d18f-ad9b-4506-80fd-44f7638ce3ec")
"""Fixed forever: a review decision's id, from its alert's id (never a re-baselining's id)."""
POOLED_DETECTOR_PREFIX = "pooled_"
"""What names a detector of the pooled per-version stage (streams.pooled)."""

DRIFT_SUFFIX = "_drift"
CLAIM_DETECTOR_MARKS = ("_cusum", "_claims_test", "_estimate", "calibration", "site_vs_fleet")
"""What names a detector that tests a registered claim (streams.detector_design, fleet_review)."""


class RebaselineRefused(ValueError):
    """The alert's detector has no reference of the stream's own to rebuild."""


class ReviewRefused(ValueError):
    """The alert is not one a review decision restarts anything for, or who or why is blank."""


def is_reference_drift(detector: str) -> bool:
    """Whether ``detector`` compares a stream with the stream's own first predictions.

    >>> is_reference_drift("kvp_band_drift"), is_reference_drift("sensitivity_cusum")
    (True, False)
    """
    return detector.endswith(DRIFT_SUFFIX)


def is_claim_based(detector: str) -> bool:
    """Whether ``detector`` tests a registered claim (CUSUM, claims test, estimate, ...)."""
    return any(mark in detector for mark in CLAIM_DETECTOR_MARKS)


def is_reviewed_on_its_stream(detector: str) -> bool:
    """Whether resolving an alert of ``detector`` publishes a review decision: a claim-based
    test of a site's stream (not the pooled stage, which has no stream to restart).

    >>> [is_reviewed_on_its_stream(d) for d in ("sensitivity_claims_test", "score_drift")]
    [True, False]
    >>> is_reviewed_on_its_stream("pooled_sensitivity_claims_test")
    False
    """
    return is_claim_based(detector) and not detector.startswith(POOLED_DETECTOR_PREFIX)


def rebaseline_refusal(detector: str) -> str | None:
    """Why an alert of ``detector`` cannot be re-baselined; None when it can."""
    if is_reference_drift(detector):
        return None
    if is_claim_based(detector):
        return (
            f"{detector} tests a registered claim, and the claims are registered, not "
            "re-baselined: investigate and resolve the alert (`alerts resolve`, which "
            "restarts the stream's rejected claims tests), or register a new claim"
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


def review_id(alert_id: uuid.UUID) -> uuid.UUID:
    """A review decision's id: the same for every review of one alert (a re-run is skipped),
    and never the id of a re-baselining (another namespace).

    >>> review_id(uuid.UUID(int=1)) == review_id(uuid.UUID(int=1))
    True
    >>> review_id(uuid.UUID(int=1)) == rebaseline_id(uuid.UUID(int=1))
    False
    """
    return uuid.uuid5(REVIEW_NAMESPACE, str(alert_id))


def rebaseline_decision(alert: AlertView | Alert, by: str, why: str, at: datetime) -> Rebaseline:
    """The decision to rebuild the reference of ``alert``'s stream, made by ``by`` at ``at``.

    Raises :class:`RebaselineRefused` when the alert's detector is not a reference-drift
    detector, or ``by`` or ``why`` is blank.
    """
    raised = alert if isinstance(alert, Alert) else alert.alert
    refusal = rebaseline_refusal(raised.detector)
    if refusal is not None:
        raise RebaselineRefused(f"cannot re-baseline alert {raised.alert_id}: {refusal}")
    return _decision(raised, by, why, at, "reference", RebaselineRefused)


def _first(error: ValidationError) -> str:
    """The first problem of ``error``, named by its field (--by is decided_by, --why reason).

    >>> try:
    ...     Rebaseline.model_validate({"reason": ""})
    ... except ValidationError as error:
    ...     _first(error)
    'rebaseline_id: Field required'
    """
    problem = error.errors()[0]
    return f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}"


def review_decision(alert: AlertView | Alert, by: str, why: str, at: datetime) -> Rebaseline:
    """The decision that ``alert`` (claim-based, on a site's stream) was reviewed and resolved
    by ``by`` at ``at`` for reason ``why``: its stream's rejected claims tests restart.

    Raises :class:`ReviewRefused` for another alert (a drift alert is re-baselined or
    resolved; a pooled one has no stream to restart), or when ``by`` or ``why`` is blank.
    """
    raised = alert if isinstance(alert, Alert) else alert.alert
    if not is_reviewed_on_its_stream(raised.detector):
        raise ReviewRefused(
            f"alert {raised.alert_id} of {raised.detector} is not a claim-based alert of a "
            "site's stream: resolving it restarts nothing on a stream"
        )
    return _decision(raised, by, why, at, "review", ReviewRefused)


def _decision(
    raised: Alert,
    by: str,
    why: str,
    at: datetime,
    scope: RebaselineScope,
    refused: type[ValueError],
) -> Rebaseline:
    """The decision of ``scope`` on ``raised``'s stream; ``refused`` when who or why is blank
    or the contract cannot carry them (too long), naming the first problem."""
    what = "re-baseline a stream" if scope == "reference" else "resolve an alert"
    if not by.strip() or not why.strip():
        raise refused(f"to {what}, say who and why")
    derive = rebaseline_id if scope == "reference" else review_id
    try:
        return Rebaseline(
            rebaseline_id=derive(raised.alert_id),
            stream=raised.stream,
            alert_id=raised.alert_id,
            decided_by=by,
            reason=why,
            decided_at=at,
            scope=scope,
        )
    except ValidationError as error:
        raise refused(f"the {scope} decision cannot carry this: {_first(error)}") from None


def publish_rebaseline(
    decision: Rebaseline, bootstrap: str, security: KafkaSecurity | None = None
) -> None:
    """Produce ``decision`` (either scope) keyed by its stream (acks=all, idempotent) and
    wait for the ack.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge it.
    """
    publish_events(
        topics.REBASELINES,
        [(decision.stream.as_key(), decision)],
        bootstrap,
        security,
        client_id="postmarket-rebaseline-publisher",
    )
