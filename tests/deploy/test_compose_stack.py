"""deploy/docker-compose.yml is a valid Compose file whose services run real CLI commands."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from deploy_files import (
    COMPOSE_FILE,
    command_argv,
    is_cli_command,
    known_postmarket_variables,
)

from collectors.settings import load_settings
from postmarket.config import ENV_PREFIX

POSTMARKET_IMAGES = {"postmarket:central", "postmarket:collector"}


def compose_spec_schema() -> dict[str, Any]:
    """The compose-spec JSON schema as vendored by the check-jsonschema package.

    Read as a data file (not imported): check-jsonschema's CLI needs a newer click than
    the one typer pins here, and only its schema is wanted.
    """
    located = importlib.metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    )
    schema: dict[str, Any] = json.loads(Path(str(located)).read_text())
    return schema


def postmarket_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") in POSTMARKET_IMAGES
    }


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert [f"{e.json_path}: {e.message}" for e in errors] == []


def test_schema_rejects_an_unknown_service_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker-1"]["comand"] = ["worker"]
    assert not jsonschema.Draft202012Validator(compose_spec_schema()).is_valid(broken)


def test_every_postmarket_service_command_is_a_real_subcommand(compose: dict[str, Any]) -> None:
    commands = {
        name: command_argv(service["command"])
        for name, service in postmarket_services(compose).items()
        if "command" in service and "entrypoint" not in service
    }
    assert {"worker-1", "worker-2", "evidence-sink", "collector"} <= set(commands)
    missing = {name: argv for name, argv in commands.items() if not is_cli_command(tuple(argv))}
    assert missing == {}


def test_topic_service_runs_the_stack_topic_code(compose: dict[str, Any]) -> None:
    """The one-shot topic service calls postmarket's own functions, which must exist."""
    script = compose["services"]["topics"]["entrypoint"][-1]
    tree = ast.parse(script)
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("postmarket.topics", "pipeline_topics") in imported
    for module, name in imported:
        assert hasattr(__import__(module, fromlist=[name]), name), f"{module}.{name}"


def test_workers_share_one_application_id_and_use_distinct_metrics_ports(
    compose: dict[str, Any],
) -> None:
    workers = [
        service
        for service in postmarket_services(compose).values()
        if command_argv(service.get("command", []))[:1] == ["worker"]
    ]
    assert len(workers) == 2
    ids = {w["environment"]["POSTMARKET_WORKER_ID"] for w in workers}
    ports = {w["environment"]["POSTMARKET_WORKER_METRICS_PORT"] for w in workers}
    assert len(ids) == 1
    assert len(ports) == 2


def test_every_postmarket_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    known = known_postmarket_variables()
    used = {
        (name, variable)
        for name, service in compose["services"].items()
        for variable in service.get("environment", {})
        if variable.startswith(ENV_PREFIX)
    }
    assert used, "no POSTMARKET_* variable found: the check would be vacuous"
    assert {pair for pair in used if pair[1] not in known} == set()


def test_every_published_port_binds_loopback_only(compose: dict[str, Any]) -> None:
    published = [
        (name, port)
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert published
    not_loopback = [
        (name, port)
        for name, port in published
        if not (
            isinstance(port, str)
            and re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/tcp|/udp)?", port)
            or isinstance(port, dict)
            and port.get("host_ip") == "127.0.0.1"
        )
    ]
    assert not_loopback == []


def test_bind_mounts_and_secret_files_point_into_the_repository(compose: dict[str, Any]) -> None:
    base = COMPOSE_FILE.parent
    missing = [
        (name, volume)
        for name, service in compose["services"].items()
        for volume in service.get("volumes", [])
        if isinstance(volume, str)
        and volume.startswith(".")
        and not (base / volume.split(":")[0]).exists()
    ]
    assert missing == []
    secrets_dir = base / "docker" / "secrets"
    for secret in compose["secrets"].values():
        # Secret files are made per machine by make-secrets.sh; their folder keeps them out of git.
        assert (base / secret["file"]).parent.resolve() == secrets_dir.resolve()
    assert (secrets_dir / ".gitignore").read_text().splitlines()[1] == "*"


def test_grafana_gets_the_provisioning_and_the_generated_dashboards(
    compose: dict[str, Any],
) -> None:
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = (COMPOSE_FILE.parent / "grafana/provisioning/dashboards/postmarket.yml").read_text()
    dashboards_path = re.search(r"path:\s*(\S+)", provider)
    assert dashboards_path is not None
    assert mounts["../dashboards/generated"] == dashboards_path.group(1)
    assert list((COMPOSE_FILE.parent / "../dashboards/generated").glob("*.json"))


def test_prometheus_loads_the_rules_and_scrapes_the_jobs_they_watch(
    compose: dict[str, Any],
) -> None:
    import yaml

    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert mounts["./prometheus/rules"] == "/etc/prometheus/rules"
    config = yaml.safe_load((COMPOSE_FILE.parent / "docker/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    rules = (COMPOSE_FILE.parent / "prometheus/rules/postmarket.yml").read_text()
    watched = set(re.findall(r'job="([^"]+)"', rules))
    assert watched and watched <= jobs
    worker_targets = next(
        job["static_configs"][0]["targets"]
        for job in config["scrape_configs"]
        if job["job_name"] == "postmarket-worker"
    )
    expected = {
        f"{name}:{service['environment']['POSTMARKET_WORKER_METRICS_PORT']}"
        for name, service in compose["services"].items()
        if "POSTMARKET_WORKER_METRICS_PORT" in service.get("environment", {})
    }
    assert set(worker_targets) == expected


def test_kafka_runs_kraft_without_topic_auto_creation(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_collector_config_is_valid_and_reads_the_key_from_its_secret(
    compose: dict[str, Any],
) -> None:
    collector = compose["services"]["collector"]
    config = COMPOSE_FILE.parent / "docker" / "collector.toml"
    settings = load_settings(config, environ=collector["environment"])
    secret_targets = {f"/run/secrets/{s['source']}" for s in collector["secrets"]}
    assert str(settings.pseudonym_key_file) in secret_targets
    assert str(settings.signing_key_file) in secret_targets
    volume_targets = [v.split(":")[1] for v in collector["volumes"] if not v.startswith(".")]
    assert any(settings.outbox_path.is_relative_to(target) for target in volume_targets)


@pytest.mark.parametrize("service", ["collector", "evidence-sink"])
def test_secret_files_are_readable_only_by_the_image_user(
    compose: dict[str, Any], service: str
) -> None:
    for secret in compose["services"][service]["secrets"]:
        assert secret["uid"] == "10001"
        assert secret["mode"] == 0o400
