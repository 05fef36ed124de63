"""A DICOM C-STORE SCP (pynetdicom) so a PACS or modality can route copies to the collector.

Only calling AE titles on the allow-list may associate; any other is rejected (counted,
logged with the title and address, never a header). They may also verify the connection
with C-ECHO (Verification SOP Class), which a PACS does before it routes. A received
instance is written as a Part 10 file into the watched inbox (to a hidden temporary name,
synced, then renamed), and success is answered only after that: from then on it takes
exactly the path of a file dropped there, and a crash after the answer loses nothing.

pynetdicom writes each instance to a temporary file as its fragments arrive
(``STORE_RECV_CHUNKED_DATASET``), so an instance of gigabytes never sits in memory; its
size is checked on that file, which is then moved (or, across file systems, copied) into
the inbox. The limit bounds what enters the inbox, not the temporary disk it passes
through: pynetdicom offers no way to stop a transfer midway.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer

from collectors.metrics import CollectorMetrics
from collectors.settings import StoreSCPSettings

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

ALL_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
"""The collector reads headers only, so it can accept any pixel encoding as it is."""


class StoreSCP:
    """Receives C-STORE requests from allowed AE titles into the inbox folder."""

    def __init__(
        self,
        settings: StoreSCPSettings,
        inbox: Path,
        metrics: CollectorMetrics | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.max_bytes = max_bytes
        """Instances larger than this are refused (Out of Resources), not written to the inbox."""
        self._metrics = metrics
        self._server: ThreadedAssociationServer | None = None
        self._ae = AE(ae_title=settings.ae_title)
        self._ae.require_calling_aet = list(settings.allowed_calling_ae_titles)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self._ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._ae.add_supported_context(VERIFICATION_SOP_CLASS)

    @property
    def address(self) -> tuple[str, int]:
        """Host and port the SCP listens on (the real port when configured as 0)."""
        if self._server is None:
            raise RuntimeError("the SCP is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Listen in background threads; returns the address."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        # Process-wide; in the collector's process only this SCP receives.
        _config.STORE_RECV_CHUNKED_DATASET = True
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_REJECTED, self._rejected),
        ]
        self._server = self._ae.start_server(
            (self.settings.host, self.settings.port), block=False, evt_handlers=handlers
        )
        log.info("C-STORE SCP %s listening on %s:%d", self.settings.ae_title, *self.address)
        return self.address

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        self._ae.shutdown()

    def _store(self, event: Any) -> int:
        try:
            received = Path(event.dataset_path)
            size = received.stat().st_size
        except Exception as error:  # a malformed request must not end the association thread
            log.warning("C-STORE from %s not readable: %s", _peer(event), type(error).__name__)
            return STATUS_CANNOT_UNDERSTAND
        if self.max_bytes is not None and size > self.max_bytes:
            log.warning(
                "C-STORE from %s refused: %d bytes exceeds the %d-byte limit",
                _peer(event),
                size,
                self.max_bytes,
            )
            if self._metrics is not None:
                self._metrics.files_rejected.labels(reason="too_large").inc()
            return STATUS_OUT_OF_RESOURCES  # pynetdicom deletes its temporary file
        name = f"scp-{uuid.uuid4().hex}.dcm"
        partial = self.inbox / f".{name}.part"
        try:
            _move_durably(received, partial)
            os.replace(partial, self.inbox / name)
        except OSError as error:
            log.error("cannot store a received instance in %s: %s", self.inbox, error.strerror)
            partial.unlink(missing_ok=True)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    def _echo(self, event: Any) -> int:
        """Answer a verification: the association already passed the AE-title allow-list."""
        log.debug("C-ECHO from %s", _peer(event))
        return STATUS_SUCCESS

    def _rejected(self, event: Any) -> None:
        if self._metrics is not None:
            self._metrics.associations_rejected.inc()
        log.warning("refused association from %s: calling AE title not allowed", _peer(event))


def _move_durably(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` (copied in chunks if they are on different file
    systems), and sync it: the SCP answers success only for what survives a crash."""
    try:
        os.replace(source, target)
    except OSError:
        shutil.copyfile(source, target)
    with target.open("rb") as stream:
        os.fsync(stream.fileno())


def _peer(event: Any) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.ae_title!r} at {requestor.address}:{requestor.port}"
