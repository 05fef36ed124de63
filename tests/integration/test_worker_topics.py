"""A worker checks the pipeline's topics before it joins its group: one missing (a release
that adds a topic, deployed before its topics job ran) or with another partition count
stops it at once with a message naming the topic, instead of a Faust consumer that may
never get its first assignment."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker, WorkerStartError
from postmarket.config import Settings
from postmarket.topic_admin import TopicAdminError, TopicMismatchError, require_topics
from postmarket.topics import TopicSpec, pipeline_topics
from tests.integration.pipeline_io import free_port

pytestmark = pytest.mark.integration


def test_the_pipeline_topics_of_the_stack_are_all_there(kafka_stack: Any) -> None:
    settings: Settings = kafka_stack.settings
    require_topics(settings.kafka_bootstrap, pipeline_topics(settings.topic_partitions))


def test_a_missing_topic_is_named_with_the_command_that_creates_it(kafka_stack: Any) -> None:
    missing = f"pms.not-created-{uuid.uuid4().hex[:6]}.v1"
    specs = [*pipeline_topics(kafka_stack.settings.topic_partitions), TopicSpec(missing, 2)]
    with pytest.raises(
        TopicAdminError, match=rf"missing .*: {missing}; .*postmarket topics create"
    ):
        require_topics(kafka_stack.settings.kafka_bootstrap, specs)


def test_a_partition_count_mismatch_is_an_error(kafka_stack: Any) -> None:
    partitions = kafka_stack.settings.topic_partitions
    with pytest.raises(TopicMismatchError, match=f"has {partitions} partitions"):
        require_topics(kafka_stack.settings.kafka_bootstrap, pipeline_topics(partitions + 1))


def test_a_worker_configured_for_other_partitions_exits_naming_the_topic(
    kafka_stack: Any, tmp_path: Path
) -> None:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-topics-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "topic_partitions": kafka_stack.settings.topic_partitions + 1,
        }
    )
    worker = LocalWorker(settings, tmp_path / "worker.log")
    with pytest.raises(WorkerStartError, match="exited with 1") as failure:
        worker.start(timeout_s=60.0)
    assert "pms.predictions.v1 has" in str(failure.value)
    assert "topic_partitions" in str(failure.value)
