"""Kafka client security from settings, and the secure stack's rules, without a broker.

The secrets themselves live only in 0600 files: these tests pin that they never reach a
repr, an error, a settings dump, ``stack.json`` or the broker's ``server.properties``.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from collectors.settings import load_settings
from launcher.local_worker import LocalWorker
from launcher.stack import kafka, manager, security
from launcher.stack.processes import ProcessRecord, StackError
from postmarket import topics
from postmarket.config import Settings
from postmarket.kafka_security import KafkaSecurity, KafkaSecurityError, RedactedPassword
from postmarket.secrets import SecretFileError, write_secret_file

PASSWORD = "s3cret-correct-horse-battery"  # noqa: S105 - a test value, never a real one


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "site-a.password"
    write_secret_file(path, PASSWORD.encode() + b"\n")
    return path


def sasl(password_file: Path, ca_file: Path | None = None) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_SSL", username="site-a", password_file=password_file, ca_file=ca_file
    )


# --- client arguments -------------------------------------------------------------------------


def test_plaintext_adds_only_the_protocol() -> None:
    assert KafkaSecurity().kafka_python_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity().aiokafka_kwargs() == {}
    assert KafkaSecurity().faust_credentials() is None


def test_sasl_ssl_reads_the_password_from_its_file(password_file: Path, tmp_path: Path) -> None:
    kwargs = sasl(password_file, tmp_path / "ca.pem").kafka_python_kwargs()
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "site-a",
        "sasl_plain_password": PASSWORD,
    }


def test_the_password_given_to_clients_is_redacted_in_reprs(password_file: Path) -> None:
    kwargs = sasl(password_file).kafka_python_kwargs()
    assert isinstance(kwargs["sasl_plain_password"], RedactedPassword)
    assert PASSWORD not in repr(kwargs) and PASSWORD not in f"{kwargs}"
    assert kwargs["sasl_plain_password"].encode() == PASSWORD.encode()


def test_security_repr_shows_no_password(password_file: Path) -> None:
    assert PASSWORD not in repr(sasl(password_file))


def test_world_readable_password_file_is_refused_without_showing_it(password_file: Path) -> None:
    password_file.chmod(0o644)
    with pytest.raises(SecretFileError) as refused:
        sasl(password_file).kafka_python_kwargs()
    assert "chmod 600" in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_sasl_without_a_password_file_is_a_clear_error() -> None:
    with pytest.raises(KafkaSecurityError, match="password file"):
        KafkaSecurity(protocol="SASL_SSL", username="site-a").kafka_python_kwargs()


def test_aiokafka_gets_a_verifying_tls_context(password_file: Path) -> None:
    kwargs = sasl(password_file).aiokafka_kwargs()
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == ("SCRAM-SHA-512", "site-a")


def test_faust_credentials_are_scram_over_tls_and_hide_the_password(password_file: Path) -> None:
    credentials = sasl(password_file).faust_credentials()
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert PASSWORD not in repr(credentials)


# --- settings ---------------------------------------------------------------------------------


def test_worker_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, password_file: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("POSTMARKET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("POSTMARKET_KAFKA_USERNAME", "worker")
    monkeypatch.setenv("POSTMARKET_KAFKA_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("POSTMARKET_KAFKA_CA_FILE", str(tmp_path / "ca.pem"))
    settings = Settings(home=tmp_path)
    assert settings.kafka_security() == KafkaSecurity(
        protocol="SASL_SSL",
        username="worker",
        password_file=password_file,
        ca_file=tmp_path / "ca.pem",
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()


def test_collector_settings_take_kafka_security_from_the_environment(
    password_file: Path, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={
            "POSTMARKET_SITE_ID": "a",
            "POSTMARKET_PSEUDONYM_KEY_FILE": str(tmp_path / "site.key"),
            "POSTMARKET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "POSTMARKET_KAFKA_USERNAME": "site-a",
            "POSTMARKET_KAFKA_PASSWORD_FILE": str(password_file),
            "POSTMARKET_KAFKA_CA_FILE": str(tmp_path / "ca.pem"),
        }
    )
    assert settings.kafka_security() == sasl(password_file, tmp_path / "ca.pem")


def test_collector_toml_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nsite_id = "a"\npseudonym_key_file = "site.key"\n'
        'kafka_security_protocol = "SASL_SSL"\nkafka_username = "site-a"\n'
        'kafka_password_file = "kafka.password"\nkafka_ca_file = "ca.pem"\n'
    )
    security_ = load_settings(config, environ={}).kafka_security()
    assert (security_.password_file, security_.ca_file) == (
        tmp_path / "kafka.password",
        tmp_path / "ca.pem",
    )


def test_local_worker_environment_names_the_password_file_not_the_password(
    password_file: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        kafka_security_protocol="SASL_SSL",
        kafka_username="worker",
        kafka_password_file=password_file,
    )
    environment = LocalWorker(settings, tmp_path / "worker.log")._environment()
    assert environment["POSTMARKET_KAFKA_PASSWORD_FILE"] == str(password_file)
    assert PASSWORD not in json.dumps(environment)


# --- the secure stack's rules -----------------------------------------------------------------


def test_a_site_may_only_write_the_input_topics() -> None:
    rules = security.site_rules("site-a")
    assert {(r.operation, r.resource, r.name, r.pattern) for r in rules} == {
        ("WRITE", "TOPIC", topics.INPUTS, "LITERAL"),
        ("WRITE", "TOPIC", topics.PREDICTIONS, "LITERAL"),
        ("WRITE", "TOPIC", topics.FOLLOWUPS, "LITERAL"),
    }


def test_no_site_rule_grants_reading_or_a_group() -> None:
    rules = security.access_rules("postmarket-worker", ["a", "b"])
    for_sites = [r for r in rules if r.principal.startswith(security.SITE_PREFIX)]
    assert len(for_sites) == 6
    assert all(r.operation == "WRITE" and r.resource == "TOPIC" for r in for_sites)


def test_the_auditor_only_reads_outputs() -> None:
    rules = security.auditor_rules()
    assert {r.operation for r in rules} == {"READ"}
    read_topics = {r.name for r in rules if r.resource == "TOPIC"}
    assert not read_topics & {
        topics.INPUTS,
        topics.PREDICTIONS,
        topics.FOLLOWUPS,
        topics.DEADLETTER,
        topics.VERSION_TALLIES,
    }


def test_the_worker_reads_inputs_but_never_writes_them() -> None:
    rules = security.worker_rules("postmarket-worker")
    on_inputs = {(r.operation, r.name) for r in rules if r.name in security.INPUT_TOPICS}
    assert on_inputs == {
        ("READ", topics.INPUTS),
        ("READ", topics.PREDICTIONS),
        ("READ", topics.FOLLOWUPS),
    }


def test_the_worker_owns_only_topics_named_after_its_app_id() -> None:
    [owned] = [r for r in security.worker_rules("pw") if r.operation == "ALL"]
    assert (owned.resource, owned.name, owned.pattern) == ("TOPIC", "pw-", "PREFIXED")


@pytest.mark.parametrize("bad", ["", "-a", "a b", "a/b", "a,b", "x" * 129])
def test_site_principal_refuses_a_non_identifier(bad: str) -> None:
    with pytest.raises(StackError):
        security.site_principal(bad)


def test_secure_broker_config_has_authorizer_mutual_tls_and_no_secret(tmp_path: Path) -> None:
    paths = security.SecurePaths(tmp_path)
    settings = security.server_settings(paths, 19092, 19094, 19093)
    text = kafka.render_server_properties(
        kafka.KafkaPaths(tmp_path), kafka.KafkaPorts(19092, 19093, 19094), settings
    )
    assert f"authorizer.class.name={security.AUTHORIZER}\n" in text
    assert "listener.name.controller.ssl.client.auth=required" in text
    assert "listener.name.internal.ssl.client.auth=required" in text
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "PLAINTEXT" not in text.split("listener.security.protocol.map=")[1].splitlines()[0]
    assert "password" not in text.lower()


def test_certificates_are_created_once_with_private_keys_0600(tmp_path: Path) -> None:
    paths = security.SecurePaths(tmp_path)
    assert security.ensure_certificates(paths)
    assert not security.ensure_certificates(paths)
    for key in (paths.ca_key, paths.broker_keystore, paths.admin_key):
        assert key.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(str(paths.admin_cert), str(paths.admin_key))


def test_passwords_are_generated_private_and_kept(tmp_path: Path) -> None:
    paths = security.SecurePaths(tmp_path)
    first = security.ensure_password(paths, "worker").read_bytes()
    assert security.ensure_password(paths, "worker").read_bytes() == first
    assert paths.password_file("worker").stat().st_mode & 0o077 == 0
    assert paths.credentials.stat().st_mode & 0o077 == 0
    assert paths.directory.stat().st_mode & 0o077 == 0
    assert len(first.strip()) >= 40


def test_secure_stack_json_names_files_but_holds_no_password(tmp_path: Path) -> None:
    paths = security.SecurePaths(tmp_path)
    password = security.ensure_password(paths, security.WORKER).read_text().strip()
    state = manager.StackState(
        processes={"kafka": ProcessRecord("kafka", 1, 19092, "now", "log")},
        ports={manager.KAFKA_INTERNAL: 19094},
        secure=True,
        sites=["a"],
    )
    state.settings = manager.client_settings(state, tmp_path)
    manager.save_state(tmp_path, state)
    written = manager.state_file(tmp_path).read_text()
    assert password not in written
    assert state.settings["kafka_password_file"] == str(paths.password_file(security.WORKER))
    assert manager.load_state(tmp_path).secure


def test_admin_connects_by_certificate_to_the_internal_listener(tmp_path: Path) -> None:
    state = manager.StackState(
        processes={"kafka": ProcessRecord("kafka", 1, 19092, "now", "log")},
        ports={manager.KAFKA_INTERNAL: 19094},
        secure=True,
    )
    bootstrap, admin = manager.admin_endpoint(tmp_path, state)
    assert bootstrap == "127.0.0.1:19094"
    assert admin is not None and admin.protocol == "SSL" and admin.cert_file is not None


# --- the command line -------------------------------------------------------------------------


def test_stack_up_site_without_secure_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from launcher.cli import app

    monkeypatch.setenv("POSTMARKET_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["stack", "up", "--site", "a"])
    assert result.exit_code == 2
    assert not (tmp_path / "stack.json").exists()


def test_add_site_needs_a_running_secure_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from launcher.cli import app

    monkeypatch.setenv("POSTMARKET_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["stack", "add-site", "a"])
    assert result.exit_code == 1
    assert "stack up --secure" in result.output
    assert not security.SecurePaths(tmp_path).credentials.exists()


def test_collector_refuses_to_start_with_a_world_readable_kafka_password(
    password_file: Path, tmp_path: Path
) -> None:
    from collectors.service import Collector
    from collectors.settings import CollectorConfigError, CollectorSettings

    key = tmp_path / "site.key"
    write_secret_file(key, b"kafka-security-test-site-secret-0123456789")
    password_file.chmod(0o604)
    settings = CollectorSettings(
        site_id="a",
        pseudonym_key_file=key,
        outbox_path=tmp_path / "outbox.db",
        kafka_security_protocol="SASL_SSL",
        kafka_username="site-a",
        kafka_password_file=password_file,
    )
    with pytest.raises(CollectorConfigError, match="accessible to other users") as refused:
        Collector(settings)
    assert PASSWORD not in str(refused.value)
