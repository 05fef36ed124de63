"""The local stack end to end: `stack up`, `stack status`, `stack down` on real services."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from launcher.stack import health, kafka, manager, prometheus
from launcher.stack.cli import stack_app
from launcher.stack.processes import SERVICE_EXECUTABLES, cmdline, mentions_home
from postmarket import topic_admin, topics
from postmarket.config import STACK_STATE_FILE, Settings
from postmarket.scrape_targets import WORKER_JOB
from postmarket.topics import TopicSpec, pipeline_topics

pytestmark = pytest.mark.integration


def services_mentioning(home: Path) -> list[int]:
    """java/prometheus/postgres processes whose command line names ``home`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = cmdline(int(entry.name))
        if argv and Path(argv[0]).name in SERVICE_EXECUTABLES and mentions_home(argv, home):
            found.append(int(entry.name))
    return found


def wait_for_self_scrape(url: str, timeout: float = 30.0) -> set[str]:
    """The jobs Prometheus lists, once its scrape of itself is up (discovery is async)."""
    deadline = time.monotonic() + timeout
    targets: list[prometheus.ScrapeTarget] = []
    while time.monotonic() < deadline:
        targets = prometheus.scrape_targets(url)
        if any(t.job == "prometheus" and t.health == "up" for t in targets):
            break
        time.sleep(0.5)
    return {target.job for target in targets}


@dataclass
class StackCycle:
    """What one up / status / up again / down cycle through the CLI produced."""

    home: Path
    first_up: Result
    status_cli: Result
    status: health.StackStatus
    state_while_up: dict[str, Any]
    target_jobs: set[str]
    second_up: Result
    down: Result
    status_after_down: Result
    processes_after_down: list[int]
    seconds_up: float
    seconds_down: float


@pytest.fixture(scope="module")
def cycle(
    request: pytest.FixtureRequest, stack_home_factory: Callable[[str], Path]
) -> Iterator[StackCycle]:
    """Run the operator's whole cycle once, with PostgreSQL, in a home of its own."""
    home = stack_home_factory("pms-stack-cycle-")
    runner = CliRunner()
    env = {"POSTMARKET_HOME": str(home), "POSTMARKET_CONFIG": str(home / "absent.toml")}
    settings = Settings(home=home)
    try:
        started = time.monotonic()
        first_up = runner.invoke(stack_app, ["up", "--postgres"], env=env)
        seconds_up = time.monotonic() - started
        state = json.loads((home / STACK_STATE_FILE).read_text())
        prometheus_url = state["settings"]["prometheus_url"]
        jobs = wait_for_self_scrape(prometheus_url)
        status_cli = runner.invoke(stack_app, ["status"], env=env)
        status = health.status(settings)
        second_up = runner.invoke(stack_app, ["up", "--postgres"], env=env)
        started = time.monotonic()
        down = runner.invoke(stack_app, ["down"], env=env)
        seconds_down = time.monotonic() - started
        yield StackCycle(
            home=home,
            first_up=first_up,
            status_cli=status_cli,
            status=status,
            state_while_up=state,
            target_jobs=jobs,
            second_up=second_up,
            down=down,
            status_after_down=runner.invoke(stack_app, ["status"], env=env),
            processes_after_down=services_mentioning(home),
            seconds_up=seconds_up,
            seconds_down=seconds_down,
        )
    finally:
        manager.down(settings)
        if request.session.testsfailed:
            print(f"stack cycle home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def test_up_succeeds_and_prints_the_addresses(cycle: StackCycle) -> None:
    assert cycle.first_up.exit_code == 0, cycle.first_up.output
    assert "kafka_bootstrap" in cycle.first_up.output


def test_up_records_client_addresses_in_stack_json(cycle: StackCycle) -> None:
    addresses = cycle.state_while_up["settings"]
    assert addresses["kafka_bootstrap"].startswith("127.0.0.1:")
    assert addresses["prometheus_url"].startswith("http://127.0.0.1:")
    assert addresses["evidence_url"].startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert set(cycle.state_while_up["processes"]) == {"kafka", "prometheus", "postgres"}


def test_status_reports_the_kafka_version_confirmed_by_the_broker(cycle: StackCycle) -> None:
    pom_version = kafka.kafka_version_from_pom(kafka.pom_path().read_text())
    assert cycle.status.kafka_version == pom_version
    assert cycle.status.cluster_id
    assert cycle.status.broker_count == 1


def test_status_reports_every_service_running_and_ready(cycle: StackCycle) -> None:
    assert cycle.status.healthy
    assert [s.name for s in cycle.status.services] == ["kafka", "prometheus", "postgres"]
    assert cycle.status_cli.exit_code == 0, cycle.status_cli.output
    assert cycle.status.cluster_id is not None
    assert f"cluster id {cycle.status.cluster_id}" in cycle.status_cli.output


def test_prometheus_lists_itself_and_the_worker_target(cycle: StackCycle) -> None:
    assert {"prometheus", WORKER_JOB} <= cycle.target_jobs
    assert any(t.job == "prometheus" and t.health == "up" for t in cycle.status.targets)


def test_second_up_reports_the_running_stack_instead_of_doubling_it(cycle: StackCycle) -> None:
    assert cycle.second_up.exit_code == 0, cycle.second_up.output
    assert cycle.second_up.output.count("already running") == 3


def test_down_leaves_no_service_process_of_the_home(cycle: StackCycle) -> None:
    assert cycle.down.exit_code == 0, cycle.down.output
    assert cycle.processes_after_down == []


def test_down_forgets_the_processes_and_status_then_fails(cycle: StackCycle) -> None:
    state = json.loads((cycle.home / STACK_STATE_FILE).read_text())
    assert state["processes"] == {}
    assert "kafka_bootstrap" not in state["settings"]
    assert cycle.status_after_down.exit_code == 1


def test_kafka_stack_fixture_has_every_pipeline_topic(kafka_stack: manager.UpResult) -> None:
    with topic_admin.admin_client(kafka_stack.settings.kafka_bootstrap) as admin:
        names = [spec.name for spec in pipeline_topics(kafka_stack.settings.topic_partitions)]
        counts = topic_admin.existing_partition_counts(admin, names)
    expected = {
        s.name: s.partitions for s in pipeline_topics(kafka_stack.settings.topic_partitions)
    }
    assert counts == expected


def test_ensure_topics_rejects_a_topic_with_another_partition_count(
    kafka_stack: manager.UpResult,
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    topic_admin.ensure_topics(bootstrap, [TopicSpec("pms.test.mismatch.v1", 2)])
    with pytest.raises(topic_admin.TopicMismatchError, match=r"pms\.test\.mismatch\.v1 has 2 .* 3"):
        topic_admin.ensure_topics(bootstrap, [TopicSpec("pms.test.mismatch.v1", 3)])


def test_the_broker_keeps_the_decision_log_whole(kafka_stack: manager.UpResult) -> None:
    """pms.rebaselines.v1's settings as the broker takes them: neither compacted (a stream's
    later decision would drop its earlier ones from a re-read) nor expired."""
    from kafka.admin import ConfigResource, ConfigResourceType

    bootstrap = kafka_stack.settings.kafka_bootstrap
    [spec] = [spec for spec in pipeline_topics(3) if spec.name == topics.REBASELINES]
    name = "pms.test.decision-log.v1"
    topic_admin.ensure_topics(bootstrap, [TopicSpec(name, spec.partitions, spec.configs)])
    with topic_admin.admin_client(bootstrap, 10.0) as admin:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    [by_name] = described.values()
    configs = {key: entry["value"] for key, entry in by_name[name].items()}
    assert (configs["cleanup.policy"], configs["retention.ms"]) == ("delete", "-1")


def test_kafka_stack_fixture_settings_point_at_its_home(kafka_stack: manager.UpResult) -> None:
    home = kafka_stack.settings.home
    state = json.loads((home / STACK_STATE_FILE).read_text())
    assert state["settings"]["kafka_bootstrap"] == kafka_stack.settings.kafka_bootstrap
    assert prometheus.is_ready(kafka_stack.settings.prometheus_url)


def test_postgres_url_fixture_accepts_sql(postgres_url: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT current_database()")).scalar() == (
                "postmarket"
            )
    finally:
        engine.dispose()


def test_postgres_listens_on_loopback_only(postgres_url: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            listen = connection.execute(sqlalchemy.text("SHOW listen_addresses")).scalar()
    finally:
        engine.dispose()
    assert listen == "127.0.0.1"
