"""The long-running collector: sources, outbox, delivery loop and /metrics, in one process.

Threads: the watched folder's poll loop, the delivery loop (outbox to Kafka), the expiry
of inputs that waited too long for their study, the Prometheus HTTP server on loopback,
pynetdicom's SCP threads, the HL7 MLLP listener's event loop and the STOW-RS event
loop's thread. They share one outbox and one case index (both lock internally).
:meth:`Collector.run` returns when its stop event is set (the CLI sets it on SIGTERM or
SIGINT) after every thread has finished: what is in the outbox stays there for the next
start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from collectors.batching import describe_contract
from collectors.case_index import CaseIndex
from collectors.delivery import DeliveryLoop, RecordSender
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.mllp_listener import MllpEndpoint, MllpListener, MllpListenerError
from collectors.outbox import Outbox
from collectors.preflight import load_secrets
from collectors.settings import CollectorSettings
from collectors.settings_environment import setting_name
from collectors.watched_folder import WatchedFolder
from postmarket.metrics_endpoint import MetricsServer, serve_metrics
from postmarket.scrape_targets import COLLECTOR_JOB, announce_scrape_target, local_stack_targets_dir

if TYPE_CHECKING:  # aiohttp is imported only when STOW-RS is configured
    from collectors.stow_rs import StowRSServer

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 60.0
RESTART_WAIT_S = 5.0
EXPIRY_CHECK_S = 3600.0
"""How often waiting inputs are checked against ``waiting_expiry_days`` (a bound in days)."""


class Collector:
    """One site's collector, assembled from its settings."""

    def __init__(
        self,
        settings: CollectorSettings,
        registry: CollectorRegistry | None = None,
        connect: Callable[[], RecordSender] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CollectorMetrics.create(self.registry)
        # Every secret is read at start (as `collector check` reads them), not at connect.
        secrets = load_secrets(settings)
        key = secrets.pseudonym_key
        self.stow_rs = self._stow_rs_server()  # reads its token, before anything is opened
        self.outbox = Outbox(
            settings.outbox_path,
            settings.outbox_max_bytes,
            settings.outbox_warn_fraction,
            self.metrics,
        )
        self.cases = CaseIndex(settings.case_index_path)
        self.intake = Intake(settings.site_id, key, self.outbox, self.cases, self.metrics)
        self.folder = (
            WatchedFolder(
                settings.inbox, self.intake, settings.followups, self.metrics, settings.ai_sr
            )
            if settings.inbox is not None
            else None
        )
        signer = secrets.signer
        if signer is None:
            log.warning(
                "no signing_key_file: events leave unsigned, and workers that require "
                "authenticity dead-letter them (see `postmarket collector keygen`)"
            )
        self.delivery = DeliveryLoop(
            self.outbox,
            connect or self._connect,
            self.metrics,
            signer=signer,
            input_contract=settings.input_contract,
            site_id=settings.site_id,
        )
        self.metrics_address: tuple[str, int] | None = None
        self.mllp = self._mllp_listener()
        self._http: MetricsServer | None = None

    def _connect(self) -> RecordSender:
        from collectors.producer import EventProducer

        return EventProducer(self.settings.kafka_bootstrap, security=self.settings.kafka_security())

    def run(self, stop: threading.Event) -> None:
        """Run every part until ``stop`` is set, then shut all of them down."""
        scp = None
        threads: list[threading.Thread] = []
        try:
            self._serve_metrics()
            threads.append(
                threading.Thread(
                    target=_keep_running,
                    args=("delivery", self.delivery.run, stop),
                    name="delivery",
                    daemon=True,
                )
            )
            threads.append(
                threading.Thread(
                    target=_keep_running,
                    args=("waiting expiry", self._expire_waiting, stop),
                    name="waiting-expiry",
                    daemon=True,
                )
            )
            if self.folder is not None:
                threads.append(
                    threading.Thread(
                        target=self.folder.run, args=(stop,), name="inbox", daemon=True
                    )
                )
            for thread in threads:
                thread.start()
            if self.settings.scp is not None and self.settings.inbox is not None:
                from collectors.store_scp import StoreSCP

                scp = StoreSCP(
                    self.settings.scp,
                    self.settings.inbox.path,
                    self.metrics,
                    max_bytes=self.settings.inbox.max_dicom_bytes,
                )
                scp.start()
            if self.stow_rs is not None:
                self.stow_rs.start()
            if self.mllp is not None:
                self.mllp.start()
            log.info(
                "collector for site %s running: inbox %s, Kafka %s (%s)",
                self.settings.site_id,
                self.settings.inbox.path if self.settings.inbox else "none",
                self.settings.kafka_bootstrap,
                describe_contract(self.settings.input_contract),
            )
            stop.wait()
        finally:
            stop.set()
            if scp is not None:
                scp.stop()
            if self.stow_rs is not None:
                self.stow_rs.stop()
            if self.mllp is not None:
                self.mllp.stop()
            for thread in threads:
                thread.join(JOIN_TIMEOUT_S)
            waiting = self.outbox.depth()
            self.close()
            log.info("collector stopped; %d events wait in the outbox", waiting)

    def _stow_rs_server(self) -> StowRSServer | None:
        """The STOW-RS endpoint, its token and TLS key read now so a bad one stops start."""
        if self.settings.stow_rs is None or self.settings.inbox is None:
            return None
        from collectors.settings import CollectorConfigError
        from collectors.stow_rs import StowRSServer

        try:
            return StowRSServer(
                self.settings.stow_rs,
                self.settings.inbox.path,
                self.metrics,
                max_instance_bytes=self.settings.inbox.max_dicom_bytes,
            )
        except (ValueError, OSError) as error:
            raise CollectorConfigError(f"[collector.stow_rs]: {error}") from None

    def _mllp_listener(self) -> MllpListener | None:
        """The HL7 MLLP listener when ``mllp_port`` is set, its TLS files checked now."""
        from collectors.settings import CollectorConfigError

        mapping = self.settings.followups.hl7
        if self.settings.mllp_port is None or mapping is None:
            return None
        try:
            endpoint = MllpEndpoint.from_settings(self.settings)
            return MllpListener(endpoint, mapping, self.intake, self.metrics)
        except MllpListenerError as error:
            raise CollectorConfigError(str(error)) from None

    def _expire_waiting(self, stop: threading.Event) -> None:
        """At start and every :data:`EXPIRY_CHECK_S`, drop what waited too long."""
        while True:
            days = self.settings.waiting_expiry_days
            expired = self.intake.expire_waiting(time.time() - days * 86400.0)
            if any(expired.values()):
                log.warning(
                    "dropped %d AI outputs and %d follow-ups that waited over %g days for "
                    "their study",
                    expired["ai_output"],
                    expired["followup"],
                    days,
                )
            if stop.wait(EXPIRY_CHECK_S):
                return

    def _serve_metrics(self) -> None:
        try:
            server = serve_metrics(self.registry, self.settings.metrics_endpoint())
        except OSError as error:  # the port is taken, the address not this host's
            where = f"{setting_name('metrics_host')}, {setting_name('metrics_port')}"
            raise OSError(error.errno, f"/metrics ({where}): {error.strerror}") from None
        self._http = server
        self.metrics_address = (server.endpoint.host, server.port)
        address = server.address
        log.info("metrics on %s", server.url)
        directory = self.settings.metrics_targets_dir
        if directory is None and self.settings.stack_home is not None:
            log.warning("stack_home is deprecated: set metrics_targets_dir instead")
            directory = local_stack_targets_dir(self.settings.stack_home, COLLECTOR_JOB)
        if directory is not None:
            labels = {"site_id": self.settings.site_id}
            target = announce_scrape_target(directory, address, labels)
            log.info("announced /metrics to Prometheus in %s", target)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self.delivery.close()
        self.outbox.close()
        self.cases.close()


def _keep_running(
    name: str, body: Callable[[threading.Event], None], stop: threading.Event
) -> None:
    """Run ``body`` until ``stop``; a bug in it is logged and it restarts, never ends us."""
    while not stop.is_set():
        try:
            body(stop)
        except Exception:
            log.exception("%s loop failed; restarting in %.0f s", name, RESTART_WAIT_S)
            stop.wait(RESTART_WAIT_S)
