"""Collector health metrics: is the outbox draining, is the broker reachable, what is refused.

Every metric takes ``registry=`` (tests use a fresh ``CollectorRegistry``); names carry the
``postmarket_collector_`` prefix, units, and ``_total`` on counters (added by the client).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from collectors.dicom_input import REJECT_REASONS
from collectors.mllp import CONNECTION_CLOSINGS, OUTCOMES, REASONS

PREFIX = "postmarket_collector"
STOW_REFUSALS = (
    "peer_not_allowed",
    "unauthenticated",
    "unsupported_media_type",
    "too_large",
    "malformed",
)
"""Why a whole STOW-RS request is refused (403, 401, 415, 413, 400); a refused instance
inside an accepted request counts in ``files_rejected``."""


@dataclass(frozen=True)
class CollectorMetrics:
    """What one collector process reports about itself."""

    outbox_depth: Gauge
    outbox_bytes: Gauge
    outbox_limit_bytes: Gauge
    outbox_near_limit: Gauge
    events_sent: Counter
    send_failures: Counter
    last_successful_send: Gauge
    files_rejected: Counter
    burned_in_annotation: Counter
    inputs_accepted: Counter
    events_queued: Counter
    cases_waiting: Gauge
    waiting_expired: Counter
    associations_rejected: Counter
    mllp_messages: Counter
    mllp_connections_refused: Counter
    mllp_connections_closed: Counter
    stow_requests_refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CollectorMetrics:
        metrics = cls(
            outbox_depth=Gauge(
                f"{PREFIX}_outbox_depth",
                "Events written to the local outbox and not yet acknowledged by Kafka.",
                registry=registry,
            ),
            outbox_bytes=Gauge(
                f"{PREFIX}_outbox_bytes",
                "Bytes of event payload waiting in the outbox.",
                registry=registry,
            ),
            outbox_limit_bytes=Gauge(
                f"{PREFIX}_outbox_limit_bytes",
                "Configured outbox capacity; new events are refused beyond it.",
                registry=registry,
            ),
            outbox_near_limit=Gauge(
                f"{PREFIX}_outbox_near_limit",
                "1 while the outbox is above its warning fraction of the limit, else 0.",
                registry=registry,
            ),
            events_sent=Counter(
                f"{PREFIX}_events_sent",
                "Events acknowledged by Kafka (acks=all) and removed from the outbox.",
                registry=registry,
            ),
            send_failures=Counter(
                f"{PREFIX}_send_failures",
                "Delivery attempts that failed (broker unreachable, not acknowledged in time).",
                registry=registry,
            ),
            last_successful_send=Gauge(
                f"{PREFIX}_last_successful_send_timestamp_seconds",
                "Unix time of the last batch Kafka acknowledged.",
                registry=registry,
            ),
            files_rejected=Counter(
                f"{PREFIX}_files_rejected",
                "Input files refused, by reason (not_dicom, truncated, missing_tags, ...).",
                ["reason"],
                registry=registry,
            ),
            burned_in_annotation=Counter(
                f"{PREFIX}_burned_in_annotation_files",
                "Headers flagged BurnedInAnnotation=YES (pixels may carry PHI; never sent).",
                registry=registry,
            ),
            inputs_accepted=Counter(
                f"{PREFIX}_inputs_accepted",
                "Input files and C-STORE instances accepted, by kind (dicom, ai_output, csv, ...).",
                ["kind"],
                registry=registry,
            ),
            events_queued=Counter(
                f"{PREFIX}_events_queued",
                "Events written to the outbox, by event type (prediction, followup).",
                ["event"],
                registry=registry,
            ),
            cases_waiting=Gauge(
                f"{PREFIX}_cases_waiting",
                "AI outputs and follow-ups held until the DICOM study they name arrives.",
                ["kind"],
                registry=registry,
            ),
            waiting_expired=Counter(
                f"{PREFIX}_waiting_expired",
                "AI outputs and follow-ups dropped after waiting waiting_expiry_days for "
                "their study, by kind.",
                ["kind"],
                registry=registry,
            ),
            associations_rejected=Counter(
                f"{PREFIX}_associations_rejected",
                "DICOM associations refused (calling AE title not on the allow-list).",
                registry=registry,
            ),
            mllp_messages=Counter(
                f"{PREFIX}_mllp_messages",
                "HL7 messages received over MLLP, by outcome (accepted AA, errored AE, "
                "refused AR) and reason.",
                ["outcome", "reason"],
                registry=registry,
            ),
            mllp_connections_refused=Counter(
                f"{PREFIX}_mllp_connections_refused",
                "MLLP connections closed at once because mllp_max_connections were open.",
                registry=registry,
            ),
            mllp_connections_closed=Counter(
                f"{PREFIX}_mllp_connections_closed",
                "MLLP connections the listener closed, by reason (peer_not_allowed: at once, "
                "unread; idle, incomplete_message, ack_not_read: no message completed or "
                "acknowledgement read for mllp_idle_timeout_s).",
                ["reason"],
                registry=registry,
            ),
            stow_requests_refused=Counter(
                f"{PREFIX}_stow_requests_refused",
                "STOW-RS requests refused whole, by reason (peer_not_allowed, "
                "unauthenticated, unsupported_media_type, too_large, malformed).",
                ["reason"],
                registry=registry,
            ),
        )
        for reason in REJECT_REASONS:  # every reason is visible at 0 from the start
            metrics.files_rejected.labels(reason=reason)
        for refusal in STOW_REFUSALS:
            metrics.stow_requests_refused.labels(reason=refusal)
        for event in ("prediction", "followup"):
            metrics.events_queued.labels(event=event)
        for kind in ("ai_output", "followup"):
            metrics.waiting_expired.labels(kind=kind)
        for closing in CONNECTION_CLOSINGS:
            metrics.mllp_connections_closed.labels(reason=closing)
        for code, mllp_reason in REASONS:
            metrics.mllp_messages.labels(outcome=OUTCOMES[code], reason=mllp_reason)
        return metrics
