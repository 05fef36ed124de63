"""The pure parts of the local stack: rendered configs, the pom, target files, state."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from launcher.stack import kafka, manager, postgres, prometheus
from launcher.stack.processes import (
    ProcessRecord,
    StackError,
    mentions_home,
    spawn_detached,
    stop_group,
)
from postmarket import topic_admin
from postmarket.topics import TopicSpec

# --- Kafka ------------------------------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def server_properties(tmp_path: Path) -> dict[str, str]:
    paths = kafka.KafkaPaths(tmp_path)
    return parse_properties(
        kafka.render_server_properties(paths, kafka.KafkaPorts(broker=19092, controller=19093))
    )


def test_repository_pom_names_the_kafka_version() -> None:
    assert kafka.kafka_version_from_pom(kafka.pom_path().read_text()) == "4.1.1"


def test_pom_version_is_read_from_the_properties_block() -> None:
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><properties>'
        "<kafka.version> 9.9.9 </kafka.version></properties></project>"
    )
    assert kafka.kafka_version_from_pom(pom) == "9.9.9"


def test_pom_without_kafka_version_is_a_clear_error() -> None:
    with pytest.raises(StackError, match="kafka.version"):
        kafka.kafka_version_from_pom("<project><properties/></project>")


def test_deploy_dir_can_be_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kafka.DEPLOY_DIR_ENV, str(tmp_path))
    with pytest.raises(StackError, match=str(tmp_path)):
        kafka.pom_path()


def test_server_is_a_combined_kraft_node(server_properties: dict[str, str]) -> None:
    assert server_properties["process.roles"] == "broker,controller"
    assert server_properties["node.id"] == "1"
    assert server_properties["controller.quorum.voters"] == "1@127.0.0.1:19093"


def test_every_listener_binds_loopback(server_properties: dict[str, str]) -> None:
    for key in ("listeners", "advertised.listeners"):
        for listener in server_properties[key].split(","):
            assert listener.split("://")[1].startswith("127.0.0.1:"), listener


def test_single_broker_replication_settings(server_properties: dict[str, str]) -> None:
    assert server_properties["offsets.topic.replication.factor"] == "1"
    assert server_properties["transaction.state.log.replication.factor"] == "1"
    assert server_properties["transaction.state.log.min.isr"] == "1"


def test_topics_are_never_auto_created(server_properties: dict[str, str]) -> None:
    assert server_properties["auto.create.topics.enable"] == "false"
    assert server_properties["group.initial.rebalance.delay.ms"] == "0"


def test_kafka_data_lives_in_the_home(tmp_path: Path, server_properties: dict[str, str]) -> None:
    assert Path(server_properties["log.dirs"]).is_relative_to(tmp_path)


def test_log4j2_config_writes_to_the_given_file_with_xml_escaping(tmp_path: Path) -> None:
    log_file = tmp_path / "a&b" / "kafka.log"
    root = ElementTree.fromstring(kafka.render_log4j2_config(log_file))  # noqa: S314
    appender = root.find("Appenders/RollingFile")
    assert appender is not None
    assert appender.get("fileName") == str(log_file)


def test_cluster_id_is_22_url_safe_characters() -> None:
    cluster_id = kafka.new_cluster_id()
    assert len(cluster_id) == 22
    assert set(cluster_id) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to a leading "-" in URL-safe base64, which kafka-storage reads as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).startswith(b"-")
    assert (
        kafka.new_cluster_id()
        == base64.urlsafe_b64encode(b"\x10" + bytes(15)).rstrip(b"=").decode()
    )


def test_jar_cache_without_marker_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    assert not kafka.jar_cache_is_complete(tmp_path)
    (tmp_path / kafka.COMPLETE_MARKER).write_text("4.1.1\n")
    assert kafka.jar_cache_is_complete(tmp_path)


def test_running_version_comes_from_the_kafka_clients_jar(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "kafka-clients-7.0.0.jar", "w") as jar:
        jar.writestr("kafka/kafka-version.properties", "commitId=abc\nversion=7.0.0\n")
    argv = ["java", "-Xmx512m", "-cp", f"{tmp_path}/*", "kafka.Kafka", "server.properties"]
    jar_dir = kafka.classpath_dir(argv)
    assert jar_dir == tmp_path
    assert kafka.version_from_jars(jar_dir) == "7.0.0"


def test_missing_topics_are_planned_for_creation() -> None:
    specs = [TopicSpec("a", 4), TopicSpec("b", 1)]
    assert topic_admin.topics_to_create(specs, {"a": 4}) == [TopicSpec("b", 1)]


def test_topic_with_other_partition_count_names_topic_and_both_counts() -> None:
    with pytest.raises(
        topic_admin.TopicMismatchError, match=r"topic a has 2 partitions .* declares 4"
    ):
        topic_admin.topics_to_create([TopicSpec("a", 4)], {"a": 2})


def test_cluster_info_counts_brokers() -> None:
    metadata = {"cluster_id": "xyz", "controller_id": 1, "brokers": [{"broker_id": 1}]}
    assert kafka.cluster_info_from_metadata(metadata) == kafka.ClusterInfo("xyz", 1, 1)


def test_early_exit_during_startup_quotes_the_kafka_log(tmp_path: Path) -> None:
    paths = kafka.KafkaPaths(tmp_path)
    paths.log.parent.mkdir(parents=True)
    paths.log.write_text("line one\nFATAL address already in use\n")
    pid = spawn_detached([sys.executable, "-c", "pass"], tmp_path / "out.log")
    record = ProcessRecord("kafka", pid, 1, "now", str(paths.log))
    with pytest.raises(StackError, match=r"exited during startup(.|\n)*already in use"):
        kafka.wait_until_ready(record, paths, timeout=10)


# --- Prometheus -------------------------------------------------------------------------------


@pytest.fixture
def prometheus_config(tmp_path: Path) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")  # PyYAML is not a declared dependency
    rendered = prometheus.render_config(prometheus.PrometheusPaths(tmp_path), 19090)
    loaded = yaml.safe_load(rendered)
    assert isinstance(loaded, dict)
    return loaded


def test_prometheus_scrapes_every_5_seconds(prometheus_config: dict[str, Any]) -> None:
    assert prometheus_config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}


def test_prometheus_jobs_discover_targets_from_files(
    tmp_path: Path, prometheus_config: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert set(jobs) == {
        "prometheus",
        "postmarket-worker",
        "postmarket-collector",
        "postmarket-evidence",
    }
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:19090"]}]
    worker_files = jobs["postmarket-worker"]["file_sd_configs"][0]["files"]
    assert worker_files == [str(tmp_path / "prometheus/targets/postmarket-worker/*.json")]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    paths = prometheus.PrometheusPaths(tmp_path)
    prometheus.write_config(paths, 19090)
    result = subprocess.run(
        ["promtool", "check", "config", str(paths.config_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_registered_target_is_a_file_sd_json_file(tmp_path: Path) -> None:
    path = prometheus.register_scrape_target(
        tmp_path, "postmarket-collector", "127.0.0.1:9500", {"site_id": "site-7"}
    )
    assert path.parent == tmp_path / "prometheus/targets/postmarket-collector"
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:9500"], "labels": {"site_id": "site-7"}}
    ]


def test_registering_again_replaces_the_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    prometheus.register_scrape_target(tmp_path, "postmarket-worker", "127.0.0.1:9464")
    path = prometheus.register_scrape_target(
        tmp_path, "postmarket-worker", "127.0.0.1:9464", {"worker": "2"}
    )
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert json.loads(path.read_text())[0]["labels"] == {"worker": "2"}


def test_target_address_must_be_host_and_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host:port"):
        prometheus.register_scrape_target(tmp_path, "postmarket-worker", "http://x/metrics")


def test_targets_are_read_from_the_api_answer() -> None:
    payload = {
        "data": {
            "activeTargets": [
                {"labels": {"job": "w"}, "scrapeUrl": "http://b/metrics", "health": "down"},
                {"labels": {"job": "p"}, "scrapeUrl": "http://a/metrics", "health": "up"},
            ]
        }
    }
    targets = prometheus.targets_from_api(payload)
    assert [(t.job, t.url, t.health) for t in targets] == [
        ("p", "http://a/metrics", "up"),
        ("w", "http://b/metrics", "down"),
    ]


# --- PostgreSQL, state and processes ------------------------------------------------------------


def test_postgres_trusts_only_the_socket_and_loopback() -> None:
    rules = [line.split() for line in postgres.render_hba().splitlines() if line[:1] != "#"]
    assert rules == [
        ["local", "all", "all", "trust"],
        ["host", "all", "all", "127.0.0.1/32", "trust"],
    ]


def test_postgres_server_listens_on_loopback_with_socket_in_home(tmp_path: Path) -> None:
    argv = postgres.server_argv(Path("/pg/bin"), postgres.PostgresPaths(tmp_path), 5999)
    assert "listen_addresses=127.0.0.1" in argv
    assert f"unix_socket_directories={tmp_path / 'postgres/run'}" in argv


def test_database_url_is_a_psycopg_sqlalchemy_url() -> None:
    assert postgres.database_url(5999) == "postgresql+psycopg://postgres@127.0.0.1:5999/postmarket"


def test_stack_state_round_trips_through_json() -> None:
    record = ProcessRecord("kafka", 42, 19092, "2026-01-01T00:00:00+00:00", "/h/logs/kafka.log")
    state = manager.StackState(
        settings={"kafka_bootstrap": "127.0.0.1:19092"},
        processes={"kafka": record},
        kafka_version="4.1.1",
        ports={"kafka": 19092},
    )
    assert manager.StackState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_evidence_url_is_published_only_when_postgres_runs() -> None:
    kafka_record = ProcessRecord("kafka", 1, 19092, "t", "l")
    state = manager.StackState(processes={"kafka": kafka_record})
    assert "evidence_url" not in manager.client_settings(state)
    state.processes["postgres"] = ProcessRecord("postgres", 2, 5999, "t", "l")
    assert manager.client_settings(state)["evidence_url"].endswith(":5999/postmarket")


def test_home_match_ignores_sibling_directories() -> None:
    home = Path("/srv/stack")
    assert mentions_home(["java", "-Dx=/srv/stack/kafka/log4j2.xml"], home)
    assert not mentions_home(["java", "-Dx=/srv/stack2/kafka/log4j2.xml"], home)


def test_stop_group_ends_a_detached_process(tmp_path: Path) -> None:
    pid = spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleep.log"
    )
    assert stop_group(pid, manager.STOP_SIGNALS["prometheus"], timeout=10)


def test_prometheus_config_loads_the_shipped_alert_rules(tmp_path: Path) -> None:
    rules = prometheus.alert_rule_files(kafka.deploy_dir())
    assert rules, "deploy/prometheus/rules has no rule files"
    paths = prometheus.PrometheusPaths(tmp_path)
    prometheus.write_config(paths, 19090, rules)
    checked = subprocess.run(
        ["promtool", "check", "config", str(paths.config_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rule files found" in checked.stdout + checked.stderr
