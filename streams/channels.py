"""The Kafka topics and tables this worker uses, declared once on the app.

Values are raw bytes: decoding is ours (``postmarket.contracts``), so invalid input is
dead-lettered with its reason instead of failing inside Faust's serializer.
"""

from __future__ import annotations

from postmarket import topics
from streams.app import app, settings

case_inputs = app.topic(
    topics.PREDICTIONS,
    topics.FOLLOWUPS,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)
outcomes = app.topic(
    topics.OUTCOMES,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)
deadletter = app.topic(
    topics.DEADLETTER,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)

case_files = app.Table(
    "case-files",
    default=None,
    partitions=settings.topic_partitions,
    help="Predictions and follow-ups of each case pseudonym, until and after the join.",
)
