"""A stream worker run as a child process, for the demo, the tests and local operation.

Ready means what a user means by it: the worker's consumer group is stable and owns the
case topics' partitions, and its /metrics endpoint answers.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from postmarket import topics
from postmarket.config import Settings


class WorkerStartError(RuntimeError):
    """The worker exited or did not become ready in time."""


class LocalWorker:
    """``postmarket worker`` in a child process with its own process group and log file."""

    def __init__(self, settings: Settings, log_file: Path, extra_env: dict[str, str] | None = None):
        self.settings = settings
        self.log_file = log_file
        self._extra_env = extra_env or {}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def metrics_url(self) -> str:
        host, port = self.settings.worker_metrics_host, self.settings.worker_metrics_port
        scheme = "https" if self.settings.metrics_tls_cert_file is not None else "http"
        return f"{scheme}://{host}:{port}/metrics"

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the worker and wait until it is ready, or raise with the log's last lines."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._environment(), **self._extra_env}
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "postmarket", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()  # a worker that never became ready must not linger
            raise

    def _environment(self) -> dict[str, str]:
        """Every setting, so the child sees exactly this worker's configuration."""
        values = self.settings.model_dump(exclude_defaults=False)
        # An unset optional setting (None) stays unset: str(None) would be the path "None".
        return {
            f"POSTMARKET_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise WorkerStartError(
                    f"worker exited with {self._process.returncode}: {self.tail()}"
                )
            if self._owns_case_partitions() and self._metrics_answer():
                return
            time.sleep(0.5)
        raise WorkerStartError(f"worker not ready after {timeout_s:.0f} s: {self.tail()}")

    def _owns_case_partitions(self) -> bool:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap,
                **self.settings.kafka_security().kafka_python_kwargs(),
            )
        except KafkaError:
            return False
        try:
            group = admin.describe_groups([self.settings.worker_id])[self.settings.worker_id]
        except (KafkaError, KeyError):
            return False
        finally:
            admin.close()
        if group.get("group_state") != "Stable":
            return False
        assigned = {
            part["topic"]
            for member in group.get("members", [])
            for part in member["member_assignment"]["assigned_partitions"]
        }
        return {topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS} <= assigned

    def _metrics_answer(self) -> bool:
        """The endpoint answers: 200, or 401 when it asks for credentials we do not send."""
        cert = self.settings.metrics_tls_cert_file
        context = ssl.create_default_context(cafile=str(cert)) if cert is not None else None
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own worker's endpoint
                self.metrics_url, timeout=2, context=context
            ) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as error:
            return error.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def tail(self, lines: int = 15) -> str:
        """The last lines of the worker's log, for error messages."""
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: a crash, for the tests that prove nothing is lost or counted twice."""
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL if the worker does not shut down in time; False if it had
        to be killed (a graceful stop commits what the worker acked, a kill does not)."""
        if not self._process or self._process.poll() is not None:
            return True
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return True

    def __enter__(self) -> LocalWorker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
