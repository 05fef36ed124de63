"""Topic administration: the pipeline's topics checked or created on a broker.

The kernel's, not the local stack's: a production worker checks its topics and a
``topics create`` job makes them on any cluster, with the configured security. Errors are
:class:`TopicAdminError` (one line naming the topics and what to do).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from postmarket.kafka_security import KafkaSecurity
from postmarket.topics import TopicSpec


class TopicAdminError(RuntimeError):
    """Topics missing, of another partition count, or the admin client unavailable."""


class TopicMismatchError(TopicAdminError):
    """A pipeline topic exists on the broker with a partition count other than declared."""


def describe_error(error: BaseException) -> str:
    """``Name: message`` with the name once: kafka-python repeats it, after an error code.

    >>> from kafka.errors import SaslAuthenticationFailedError
    >>> describe_error(SaslAuthenticationFailedError("invalid credentials"))
    'SaslAuthenticationFailedError: invalid credentials'
    >>> describe_error(TimeoutError("TimeoutError: Unable to bootstrap"))
    'TimeoutError: Unable to bootstrap'
    """
    name = type(error).__name__
    text = re.sub(r"^\[Error -?\d+\]\s*", "", str(error).strip())
    while text.startswith(f"{name}:") or text == name:
        text = text.removeprefix(name).removeprefix(":").strip()
    return f"{name}: {text}" if text else name


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Silence kafka-python's connection warnings while we poll a broker that is starting."""
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def admin_client(
    bootstrap: str, timeout: float = 10.0, security: KafkaSecurity | None = None
) -> Iterator[Any]:
    """A kafka-python ``KafkaAdminClient`` that is closed afterwards."""
    try:
        from kafka.admin import KafkaAdminClient
    except ImportError as error:  # the bare kernel install has no Kafka client
        raise TopicAdminError(
            "kafka-python is not installed; install postmarket-surveillance[collector] or [worker]"
        ) from error
    timeout_ms = int(timeout * 1000)
    client = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="postmarket-stack",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        # Polled while the broker starts: a long exponential backoff would notice it late.
        reconnect_backoff_max_ms=500,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    )
    try:
        yield client
    finally:
        client.close()


def topics_to_create(specs: Sequence[TopicSpec], existing: Mapping[str, int]) -> list[TopicSpec]:
    """The declared topics missing from ``existing`` (name -> partition count).

    A topic that exists with another partition count is an error rather than something
    to fix silently: shrinking is impossible and growing re-routes keys mid-stream.
    """
    for spec in specs:
        found = existing.get(spec.name)
        if found is not None and found != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name} has {found} partitions on the broker but the pipeline "
                f"declares {spec.partitions}; delete it or set topic_partitions={found}"
            )
    return [spec for spec in specs if spec.name not in existing]


def existing_partition_counts(admin: Any, names: Sequence[str]) -> dict[str, int]:
    """Partition count of each named topic that exists on the broker."""
    present = set(admin.list_topics()) & set(names)
    if not present:
        return {}
    return {
        str(topic["name"]): len(topic["partitions"])
        for topic in admin.describe_topics(sorted(present))
        if topic.get("error_code", 0) == 0
    }


def require_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
) -> None:
    """Raise :class:`TopicAdminError` naming every declared topic that is missing, or one that has
    another partition count (:class:`TopicMismatchError`), without creating anything.

    For the workers: they must not create the public topics (a secured worker may not), and
    Faust subscribed to a missing one can miss its first assignment and never recover.
    """
    names = [spec.name for spec in specs]
    with quiet_kafka_client(), admin_client(bootstrap, timeout, security) as admin:
        missing = topics_to_create(specs, existing_partition_counts(admin, names))
    if missing:
        raise TopicAdminError(
            f"topics missing on {bootstrap}: {', '.join(spec.name for spec in missing)}; "
            "create them with `postmarket topics create` (or `postmarket stack up`) first"
        )


def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
    replication_factor: int = 1,
) -> list[str]:
    """Create the missing pipeline topics; return the names created (idempotent)."""
    names = [spec.name for spec in specs]
    with quiet_kafka_client(), admin_client(bootstrap, timeout, security) as admin:
        missing = topics_to_create(specs, existing_partition_counts(admin, names))
        if missing:
            request = {
                spec.name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": replication_factor,
                    "configs": dict(spec.configs),
                }
                for spec in missing
            }
            # raise_errors=False: a concurrent creator winning the race is fine; the
            # re-check below is what decides.
            admin.create_topics(request, timeout_ms=int(timeout * 1000), raise_errors=False)
            admin.wait_for_topics([spec.name for spec in missing], timeout_ms=int(timeout * 1000))
        still_missing = topics_to_create(specs, existing_partition_counts(admin, names))
    if still_missing:
        raise TopicAdminError(
            f"could not create topics: {', '.join(s.name for s in still_missing)}"
        )
    return [spec.name for spec in missing]
