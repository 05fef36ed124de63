"""Apache Kafka for the local stack: one KRaft node (broker + controller) on 127.0.0.1.

The broker is the real Apache Kafka, run from its Maven Central jars (resolved once into
``<home>/cache/kafka-<version>/`` by ``deploy/kafka/pom.xml``) so there is no Docker and
no distribution tarball to unpack. Topics are created here, explicitly, because the broker
runs with ``auto.create.topics.enable=false`` and Faust refuses a topic whose partition
count differs from what the app declares.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from launcher.stack.processes import (
    LOOPBACK,
    ProcessRecord,
    StackError,
    cmdline,
    is_running,
    spawn_detached,
    tail,
)
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_admin import (
    TopicAdminError,
    admin_client,
    describe_error,
    quiet_kafka_client,
)

DEPLOY_DIR_ENV = "POSTMARKET_DEPLOY_DIR"
POM_NAMESPACE = "{http://maven.apache.org/POM/4.0.0}"
COMPLETE_MARKER = ".complete"
NODE_ID = 1
JVM_HEAP = ("-Xmx1g", "-Xms1g")
"""Kafka's own default heap (kafka-server-start.sh), fixed. At half of it (512 MB, 256
grown on demand) the broker's garbage collector ran concurrent cycles through every busy
stretch: 4 to 5 s of its CPU (G1's concurrent and parallel threads) while one worker read
120,000 events, against 0.04 s here; on a 2-CPU machine that time is taken from the worker."""
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class KafkaPorts:
    """The listeners of the combined node (``internal`` only on a secure stack)."""

    broker: int
    controller: int
    internal: int | None = None

    @property
    def bootstrap(self) -> str:
        """The address clients bootstrap from."""
        return f"{LOOPBACK}:{self.broker}"


@dataclass(frozen=True)
class KafkaPaths:
    """Where the broker keeps its configuration, data and log inside the stack home."""

    home: Path

    @property
    def config_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def server_properties(self) -> Path:
        return self.config_dir / "server.properties"

    @property
    def log4j2_config(self) -> Path:
        return self.config_dir / "log4j2.xml"

    @property
    def data_dir(self) -> Path:
        return self.config_dir / "data"

    @property
    def log(self) -> Path:
        """Kafka's own log (log4j2)."""
        return self.home / "logs" / "kafka.log"

    @property
    def console_log(self) -> Path:
        """The JVM's stdout/stderr: errors that happen before logging is configured."""
        return self.home / "logs" / "kafka.out"

    def jar_cache(self, version: str) -> Path:
        return self.home / "cache" / f"kafka-{version}"


@dataclass(frozen=True)
class ClusterInfo:
    """What a metadata round trip to the broker tells us."""

    cluster_id: str
    broker_count: int
    controller_id: int | None


# --- the pom and the jar cache ----------------------------------------------------------------


def deploy_dir() -> Path:
    """The repository's ``deploy/`` directory (``POSTMARKET_DEPLOY_DIR`` overrides)."""
    override = os.environ.get(DEPLOY_DIR_ENV)
    if override:
        return Path(override)
    # launcher/stack/kafka.py -> repository root is two levels above the package.
    return Path(__file__).resolve().parents[2] / "deploy"


def pom_path() -> Path:
    """The Maven project that lists Kafka's jars."""
    pom = deploy_dir() / "kafka" / "pom.xml"
    if not pom.is_file():
        raise StackError(f"{pom} not found; set {DEPLOY_DIR_ENV} to the repository's deploy dir")
    return pom


def kafka_version_from_pom(pom_text: str) -> str:
    """The ``kafka.version`` property of a pom, e.g. ``"4.1.1"``."""
    # The pom is the repository's own file, not untrusted input.
    root = ElementTree.fromstring(pom_text)  # noqa: S314
    for tag in (
        f"{POM_NAMESPACE}properties/{POM_NAMESPACE}kafka.version",
        "properties/kafka.version",
    ):
        element = root.find(tag)
        if element is not None and element.text and element.text.strip():
            return element.text.strip()
    raise StackError("deploy/kafka/pom.xml has no <kafka.version> property")


def jar_cache_is_complete(jar_dir: Path) -> bool:
    """Whether a previous resolution finished (the marker is written last)."""
    return (jar_dir / COMPLETE_MARKER).is_file() and any(jar_dir.glob("kafka_*.jar"))


def resolve_jars(home: Path, pom: Path, version: str, log: Path) -> Path:
    """Copy Kafka and its runtime dependencies into the jar cache unless already there.

    Maven writes into a scratch directory that is renamed into place only on success, so
    an interrupted download never looks complete.
    """
    jar_dir = KafkaPaths(home).jar_cache(version)
    if jar_cache_is_complete(jar_dir):
        return jar_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed once to fetch Kafka's jars; install maven")
    scratch = jar_dir.with_name(f".{jar_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    argv = [mvn, "-q", "-B", "-f", str(pom), f"-DoutputDirectory={scratch}"]
    argv.append("dependency:copy-dependencies")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        result = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if result.returncode != 0 or not any(scratch.glob("kafka_*.jar")):
        raise StackError(f"Maven could not fetch Kafka {version} jars; see {log}:\n{tail(log)}")
    (scratch / COMPLETE_MARKER).write_text(f"{version}\n")
    shutil.rmtree(jar_dir, ignore_errors=True)
    scratch.rename(jar_dir)
    return jar_dir


def version_from_jars(jar_dir: Path) -> str | None:
    """The Kafka version compiled into the ``kafka-clients`` jar of a directory."""
    for jar in sorted(jar_dir.glob("kafka-clients-*.jar")):
        try:
            with zipfile.ZipFile(jar) as archive:
                text = archive.read("kafka/kafka-version.properties").decode()
        except (OSError, KeyError, zipfile.BadZipFile):
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "version":
                return value.strip()
    return None


def classpath_dir(argv: Sequence[str]) -> Path | None:
    """The jar directory in a ``java -cp DIR/*`` command line (None if absent)."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("-cp", "-classpath") and value.endswith("/*"):
            return Path(value[:-2])
    return None


def running_version(pid: int) -> str | None:
    """The Kafka version a running broker process actually loaded (from its classpath)."""
    jar_dir = classpath_dir(cmdline(pid))
    return version_from_jars(jar_dir) if jar_dir is not None else None


# --- configuration ----------------------------------------------------------------------------


def render_server_properties(
    paths: KafkaPaths, ports: KafkaPorts, overrides: Mapping[str, str | int] | None = None
) -> str:
    """``server.properties`` for a single combined KRaft node listening on loopback only.

    Replication factors are 1 because there is one broker; rebalance delay is 0 so a
    worker that joins alone starts at once instead of waiting three seconds. ``overrides``
    (the secure stack's listeners, TLS and authorizer) replace or add entries.
    """
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{ports.controller}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{ports.broker},CONTROLLER://{LOOPBACK}:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{ports.broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.data_dir),
        "num.partitions": 1,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
    }
    settings.update(overrides or {})
    header = "# Written by launcher.stack.kafka on every `stack up`; edits are overwritten.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def _xml_attribute(value: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(value)


def render_log4j2_config(log_file: Path) -> str:
    """A log4j2 XML configuration sending Kafka's log to one rolling file.

    log4j2's own shutdown hook is disabled: it would close the log before Kafka's
    shutdown hook has written how the broker shut down.
    """
    file_name = _xml_attribute(str(log_file))
    pattern = _xml_attribute(f"{log_file}.%i")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName={file_name} filePattern={pattern}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Never one that starts with ``-``: ``kafka-storage format -t -abc...`` reads it as an
    option (1 id in 64 did, and failed the stack's start); Kafka's own ``Uuid.randomUuid``
    draws again for the same reason.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_command(
    jar_dir: Path, main_class: str, *args: str, extra: Sequence[str] = ()
) -> list[str]:
    """``java`` with Kafka's jars on the classpath (a directory wildcard keeps argv short)."""
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is needed to run Kafka; install a JRE (17 or newer)")
    return [java, *extra, "-cp", f"{jar_dir}/*", main_class, *args]


def write_config(
    paths: KafkaPaths, ports: KafkaPorts, overrides: Mapping[str, str | int] | None = None
) -> None:
    """Render this start's server.properties and log4j2 config into the home."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(render_server_properties(paths, ports, overrides))
    paths.log4j2_config.write_text(render_log4j2_config(paths.log))


def format_storage(paths: KafkaPaths, jar_dir: Path) -> bool:
    """Format the KRaft log directory once; returns False if it was already formatted."""
    if (paths.data_dir / "meta.properties").is_file():
        return False
    argv = java_command(
        jar_dir,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        new_cluster_id(),
        "-c",
        str(paths.server_properties),
        extra=[f"-Dlog4j2.configurationFile={paths.log4j2_config}"],
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise StackError(f"formatting Kafka storage in {paths.data_dir} failed: {output}")
    return True


def start(paths: KafkaPaths, ports: KafkaPorts, jar_dir: Path) -> ProcessRecord:
    """Start the broker detached and return its process record (not yet ready)."""
    argv = java_command(
        jar_dir,
        "kafka.Kafka",
        str(paths.server_properties),
        extra=[
            *JVM_HEAP,
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={paths.log4j2_config}",
        ],
    )
    pid = spawn_detached(argv, paths.console_log, cwd=paths.config_dir)
    return ProcessRecord(
        name="kafka",
        pid=pid,
        port=ports.broker,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log=str(paths.log),
    )


# --- talking to the broker --------------------------------------------------------------------


def cluster_info_from_metadata(metadata: Mapping[str, Any]) -> ClusterInfo:
    """Pick the facts we report out of ``describe_cluster()``'s answer."""
    controller = metadata.get("controller_id")
    return ClusterInfo(
        cluster_id=str(metadata.get("cluster_id") or ""),
        broker_count=len(metadata.get("brokers") or []),
        controller_id=int(controller) if controller is not None and controller >= 0 else None,
    )


def describe_cluster(
    bootstrap: str, timeout: float = 10.0, security: KafkaSecurity | None = None
) -> ClusterInfo:
    """One metadata round trip: proves the broker answers, and says which cluster it is."""
    with quiet_kafka_client(), admin_client(bootstrap, timeout, security) as admin:
        return cluster_info_from_metadata(admin.describe_cluster())


def _failure(message: str, paths: KafkaPaths) -> StackError:
    quoted = tail(paths.log) or tail(paths.console_log) or "(the log is empty)"
    return StackError(f"{message}; last lines of {paths.log}:\n{quoted}")


def wait_until_ready(
    record: ProcessRecord,
    paths: KafkaPaths,
    timeout: float = READY_TIMEOUT,
    bootstrap: str | None = None,
    security: KafkaSecurity | None = None,
) -> ClusterInfo:
    """Block until the broker answers ``describe_cluster``; fail fast if the JVM exits."""
    bootstrap = bootstrap or f"{LOOPBACK}:{record.port}"
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not is_running(record.pid):
            raise _failure(f"Kafka (pid {record.pid}) exited during startup", paths)
        try:
            info = describe_cluster(
                bootstrap, timeout=min(5.0, max(1.0, timeout / 10)), security=security
            )
        except (StackError, TopicAdminError, TypeError, ValueError):
            raise
        except Exception as error:  # any client error means "not ready yet"
            if type(error).__name__ == "KafkaConfigurationError":
                raise StackError(f"bad Kafka client configuration: {error}") from error
            last_error = describe_error(error)
            time.sleep(0.5)
            continue
        if info.broker_count > 0:
            return info
        last_error = "metadata listed no brokers"
        time.sleep(0.5)
    raise _failure(f"Kafka at {bootstrap} not ready after {timeout:.0f} s ({last_error})", paths)
