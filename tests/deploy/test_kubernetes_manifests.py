"""deploy/kubernetes: every object valid for its kind, workers bounded by the partitions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_files import (
    KUBERNETES_DIR,
    REPO,
    command_argv,
    is_cli_command,
    known_postmarket_variables,
    load_yaml_documents,
    subcommand_words,
)

from collectors.settings import load_settings
from dashboards import prometheus_rule
from postmarket.config import ENV_PREFIX

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes release the manifests are checked against (strict schemas)."""

KUSTOMIZATION = KUBERNETES_DIR / "kustomization.yaml"
PROMETHEUS_RULE_SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "prometheusrule-v1.json").read_text()
)
"""The PrometheusRule CRD's schema (prometheus-operator 0.76), strict about unknown fields."""


def resources() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    return [
        (name, document)
        for name in kustomization["resources"]
        for document in load_yaml_documents(KUBERNETES_DIR / name)
    ]


def objects_of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in resources() if doc["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    specs = {}
    for _, doc in resources():
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return specs


def settings_data() -> dict[str, str]:
    data: dict[str, str] = objects_of_kind("ConfigMap")["postmarket-settings"]["data"]
    return data


def test_kustomization_lists_every_manifest_in_the_folder() -> None:
    listed = set(yaml.safe_load(KUSTOMIZATION.read_text())["resources"])
    on_disk = {p.name for p in KUBERNETES_DIR.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert listed == on_disk


@pytest.mark.parametrize(
    ("source", "document"),
    [pytest.param(s, d, id=f"{s}:{d['kind']}") for s, d in resources()],
)
def test_object_is_valid_for_its_kind(source: str, document: dict[str, Any]) -> None:
    if document["kind"] == "PrometheusRule":
        jsonschema.validate(document, PROMETHEUS_RULE_SCHEMA)
        return
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        pytest.skip("custom resource: checked structurally by the monitor tests")
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_prometheus_rule_carries_exactly_the_alert_rules_files() -> None:
    rule = objects_of_kind("PrometheusRule")[prometheus_rule.NAME]
    groups = [
        group
        for path in sorted(prometheus_rule.RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert groups
    assert rule["spec"]["groups"] == groups


def test_prometheus_rule_manifest_is_regenerated() -> None:
    """Run ``postmarket dashboards build`` after editing deploy/prometheus/rules."""
    assert prometheus_rule.is_current()


def test_prometheus_rule_schema_rejects_a_misspelt_rule_field() -> None:
    rule = objects_of_kind("PrometheusRule")[prometheus_rule.NAME]
    broken = yaml.safe_load(yaml.safe_dump(rule))
    first = broken["spec"]["groups"][0]["rules"][0]
    first["expression"] = first.pop("expr")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PROMETHEUS_RULE_SCHEMA)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    deployment = objects_of_kind("Deployment")["postmarket-worker"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_worker_replicas_do_not_exceed_the_topic_partitions() -> None:
    worker = objects_of_kind("Deployment")["postmarket-worker"]
    partitions = int(settings_data()["POSTMARKET_TOPIC_PARTITIONS"])
    assert 1 <= worker["spec"]["replicas"] <= partitions
    # A surge pod during a rollout would be one worker more than there are partitions.
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_every_postmarket_container_runs_a_real_subcommand() -> None:
    commands = {
        f"{name}/{container['name']}": command_argv(container["args"])
        for name, spec in pod_specs().items()
        for container in spec["containers"]
        if "command" not in container
    }
    assert {"postmarket-worker/worker", "postmarket-evidence-sink/evidence-sink"} <= set(commands)
    assert {name: argv for name, argv in commands.items() if not is_cli_command(tuple(argv))} == {}


def test_topics_job_runs_the_topics_create_command() -> None:
    spec = objects_of_kind("Job")["postmarket-topics"]["spec"]["template"]["spec"]
    argv = command_argv(spec["containers"][0]["args"])
    assert subcommand_words(argv) == ("topics", "create")
    assert is_cli_command(("topics", "create"))


def test_every_postmarket_variable_is_a_real_setting() -> None:
    used = set(settings_data())
    for spec in pod_specs().values():
        for container in spec.get("initContainers", []) + spec["containers"]:
            used |= {variable["name"] for variable in container.get("env", [])}
    used = {name for name in used if name.startswith(ENV_PREFIX)}
    assert used
    assert used - known_postmarket_variables() == set()


def test_collector_is_a_statefulset_with_its_outbox_on_a_claimed_volume(tmp_path: Path) -> None:
    collector = objects_of_kind("StatefulSet")["postmarket-collector"]
    claims = {c["metadata"]["name"] for c in collector["spec"]["volumeClaimTemplates"]}
    container = collector["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = objects_of_kind("ConfigMap")["postmarket-collector"]["data"]["collector.toml"]
    config_file = tmp_path / "collector.toml"
    config_file.write_text(config)
    settings = load_settings(config_file, environ={})
    claimed_paths = [Path(mounts[name]) for name in claims]
    assert any(settings.outbox_path.is_relative_to(path) for path in claimed_paths)
    assert settings.inbox is not None
    assert any(settings.inbox.path.is_relative_to(path) for path in claimed_paths)


@pytest.mark.parametrize(
    ("init", "variable"), [(0, "POSTMARKET_PSEUDONYM_KEY_FILE"), (1, "POSTMARKET_SIGNING_KEY_FILE")]
)
def test_each_key_comes_from_a_secret_file_with_mode_0400(init: int, variable: str) -> None:
    spec = objects_of_kind("StatefulSet")["postmarket-collector"]["spec"]["template"]["spec"]
    secret_volumes = [v for v in spec["volumes"] if "secret" in v]
    assert [v["secret"]["defaultMode"] for v in secret_volumes] == [0o400, 0o400]
    key_env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    install = spec["initContainers"][init]["command"]
    assert install[:3] == ["install", "-m", "0400"]
    assert install[-1] == key_env[variable]
    secret_mount = next(
        m["mountPath"]
        for m in spec["initContainers"][init]["volumeMounts"]
        if m["name"] == secret_volumes[init]["name"]
    )
    assert Path(install[-2]).parent == Path(secret_mount)


def test_every_referenced_secret_is_explained_in_the_kustomization() -> None:
    text = yaml.safe_dump([doc for _, doc in resources()])
    referenced = set(re.findall(r"(?:secretName|name): (postmarket-[a-z-]+)\n\s+key:", text))
    referenced |= set(re.findall(r"secretName: (\S+)", text))
    assert referenced
    instructions = KUSTOMIZATION.read_text()
    assert {n for n in referenced if f"create secret generic {n}" not in instructions} == set()


def test_servicemonitor_scrapes_the_worker_service_metrics_port() -> None:
    monitor = objects_of_kind("ServiceMonitor")["postmarket-worker"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    services = objects_of_kind("Service")
    selected = [
        service
        for service in services.values()
        if monitor["spec"]["selector"]["matchLabels"].items()
        <= service["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["postmarket-worker"]
    port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
    assert selected[0]["spec"]["ports"][0]["port"] == int(
        settings_data()["POSTMARKET_WORKER_METRICS_PORT"]
    )


def test_worker_job_label_is_the_one_the_alert_rules_watch() -> None:
    """Without jobLabel, the Prometheus Operator names the job after the Service."""
    monitor = objects_of_kind("ServiceMonitor")["postmarket-worker"]
    assert "jobLabel" not in monitor["spec"]
    rules = (REPO / "deploy/prometheus/rules/postmarket.yml").read_text()
    assert 'up{job="postmarket-worker"}' in rules


def test_services_select_pods_that_exist() -> None:
    pod_labels = [
        doc["spec"]["template"]["metadata"]["labels"]
        for _, doc in resources()
        if doc["kind"] in {"Deployment", "StatefulSet"}
    ]
    for name, service in objects_of_kind("Service").items():
        selector = service["spec"]["selector"].items()
        assert any(selector <= labels.items() for labels in pod_labels), name


def test_evidence_sink_podmonitor_scrapes_the_sink_metrics_port() -> None:
    monitor = objects_of_kind("PodMonitor")["postmarket-evidence-sink"]
    sink = objects_of_kind("Deployment")["postmarket-evidence-sink"]["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= sink["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in sink["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= set(ports)
    assert ports["metrics"] == int(settings_data()["POSTMARKET_EVIDENCE_METRICS_PORT"])
    assert settings_data()["POSTMARKET_EVIDENCE_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - pod
