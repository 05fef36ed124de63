"""A DICOMweb STOW-RS origin server (PS3.18 10.5) beside the C-STORE SCP.

An AI platform or PACS that pushes over HTTP POSTs ``multipart/related;
type="application/dicom"`` to ``/studies`` (or ``/studies/{study}``). Each part is a
Part 10 instance and takes exactly the C-STORE SCP's path: written into the watched inbox
under a hidden name, synced, then renamed, and only then acknowledged; from there the
watched folder de-identifies it like any file dropped there, and a crash after the answer
loses nothing.

A request must come from an allowed peer and/or carry the bearer token of ``token_file``
(never logged). Parts are streamed to disk as they arrive, never held in memory; each is
bounded by ``max_dicom_bytes`` and the whole body by ``max_request_bytes``. Nothing is
renamed into the inbox before the whole body has arrived, so a refused or broken request
leaves nothing behind. The answer is a Store Instances Response (application/dicom+json):
200 when every instance is stored, 202 when some failed, 409 when none was; each failed
instance is named in the log and a ``Warning`` header with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import ssl
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.helpers import parse_mimetype
from pydicom.dataset import Dataset

from collectors.dicom_input import RejectedFile, RejectReason, read_header, require_tags
from collectors.metrics import CollectorMetrics
from collectors.settings import StowRSSettings
from collectors.settings_environment import secret_setting, setting_name
from postmarket.secrets import SecretFileError, read_secret_file

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
RESPONSE_MEDIA_TYPE = "application/dicom+json"
CHUNK_BYTES = 1024**2
START_TIMEOUT_S = 30.0

# Failure Reason (0008,1197) values: the C-STORE status classes of PS3.4 Annex B.
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_STUDY_MISMATCH = 0xC409
"""In the Cannot Understand range; the value dcm4chee answers for the same case."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class StoredInstance:
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class FailedInstance:
    """An instance not stored: its UIDs when readable, the status and why, in words."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure_reason: int
    reason: RejectReason
    detail: str


Outcome = StoredInstance | FailedInstance


class StowRSConfigError(ValueError):
    """The endpoint cannot start: its TLS certificate or key is unusable."""


class RequestRefused(Exception):
    """The whole request is refused: HTTP status, metric label and a message for the sender."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(message)


# --- pure rules ---------------------------------------------------------------------------------


def peer_allowed(remote: str | None, allowed: Sequence[Network]) -> bool:
    """Whether the peer address is in one of the ``allowed`` networks (any, if none listed)."""
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket shows IPv4 peers this way
    return any(address in network for network in allowed)


def bearer_token_matches(authorization: str, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token)


def media_type_problem(content_type: str) -> str | None:
    """Why a request's Content-Type is not a STOW-RS body of Part 10 instances, or None."""
    mime = parse_mimetype(content_type)
    if (mime.type, mime.subtype) != ("multipart", "related"):
        shown = f"{mime.type}/{mime.subtype}" if mime.type else "none"
        return f'Content-Type is {shown}; send multipart/related; type="{DICOM_MEDIA_TYPE}"'
    declared = mime.parameters.get("type", DICOM_MEDIA_TYPE).lower()
    if declared != DICOM_MEDIA_TYPE:
        return (
            f'multipart/related of type "{declared}" is not accepted; only '
            f'"{DICOM_MEDIA_TYPE}" (Part 10 instances, not metadata and bulk data)'
        )
    return None


def store_instances_response(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """The PS3.18 Store Instances Response as DICOM JSON: Referenced and Failed SOP
    Sequences (each present only when it has an item)."""
    response = Dataset()
    stored = [o for o in outcomes if isinstance(o, StoredInstance)]
    failed = [o for o in outcomes if isinstance(o, FailedInstance)]
    if stored:
        response.ReferencedSOPSequence = [
            _referenced(o.sop_class_uid, o.sop_instance_uid) for o in stored
        ]
    if failed:
        items = []
        for outcome in failed:
            item = _referenced(outcome.sop_class_uid, outcome.sop_instance_uid)
            item.FailureReason = outcome.failure_reason
            items.append(item)
        response.FailedSOPSequence = items
    return response.to_json_dict()


def response_status(outcomes: Sequence[Outcome]) -> int:
    """200 when every instance was stored, 202 when some were, 409 when none was."""
    stored = sum(isinstance(o, StoredInstance) for o in outcomes)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


def _referenced(sop_class_uid: str | None, sop_instance_uid: str | None) -> Dataset:
    item = Dataset()
    if sop_class_uid:
        item.ReferencedSOPClassUID = sop_class_uid
    if sop_instance_uid:
        item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


# --- one instance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spooled:
    """A part received whole into a hidden file of the inbox, not yet acknowledged."""

    number: int
    path: Path


def accept_instance(spooled: Path, study: str | None, inbox: Path) -> Outcome:
    """Check one spooled instance like the watched folder will, then store it durably in
    the inbox exactly as the C-STORE SCP does (synced, then renamed)."""
    try:
        header = read_header(spooled)
        require_tags(spooled, header)
    except RejectedFile as rejected:
        spooled.unlink(missing_ok=True)
        return FailedInstance(
            None, None, FAILURE_CANNOT_UNDERSTAND, rejected.reason, rejected.detail
        )
    sop_class, sop_instance = _uids(header)
    if study is not None and str(header.StudyInstanceUID) != study:
        spooled.unlink(missing_ok=True)
        return FailedInstance(
            sop_class,
            sop_instance,
            FAILURE_STUDY_MISMATCH,
            "study_mismatch",
            "its Study Instance UID is not the study of the request URL",
        )
    if not sop_class or not sop_instance:
        spooled.unlink(missing_ok=True)
        return FailedInstance(
            sop_class,
            sop_instance,
            FAILURE_CANNOT_UNDERSTAND,
            "missing_tags",
            "missing SOP Class UID or SOP Instance UID",
        )
    try:
        with spooled.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(spooled, inbox / f"stow-{uuid.uuid4().hex}.dcm")
    except OSError as error:
        log.error("cannot store a STOW-RS instance in %s: %s", inbox, error.strerror)
        spooled.unlink(missing_ok=True)
        return FailedInstance(
            sop_class,
            sop_instance,
            FAILURE_OUT_OF_RESOURCES,
            "unreadable",
            "the collector could not write it to its inbox; see its log",
        )
    return StoredInstance(sop_class, sop_instance)


def _uids(header: Dataset) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs, from the dataset or else its Part 10 meta header."""
    meta = getattr(header, "file_meta", None) or Dataset()
    sop_class = header.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
    sop_instance = header.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")
    return (str(sop_class) if sop_class else None, str(sop_instance) if sop_instance else None)


# --- the server ---------------------------------------------------------------------------------


class StowRSServer:
    """Receives STOW-RS requests into the inbox folder, in an event loop of its own thread."""

    def __init__(
        self,
        settings: StowRSSettings,
        inbox: Path,
        metrics: CollectorMetrics | None = None,
        max_instance_bytes: int | None = None,
    ) -> None:
        """Reads the token and TLS key now: a missing or world-readable one refuses start
        (a ``ValueError``: ``SecretFileError`` or ``StowRSConfigError``) before anything
        listens."""
        self.settings = settings
        self.inbox = inbox
        self.max_instance_bytes = max_instance_bytes
        self._metrics = metrics
        self._token = settings.bearer_token()
        self._tls = (
            None
            if settings.tls_cert_file is None or settings.tls_key_file is None
            else server_tls_context(settings.tls_cert_file, settings.tls_key_file)
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None

    @property
    def scheme(self) -> str:
        return "http" if self._tls is None else "https"

    @property
    def address(self) -> tuple[str, int]:
        """Host and port it listens on (the real port when configured as 0)."""
        if self._address is None:
            raise RuntimeError("the STOW-RS server is not started")
        return self._address

    def start(self) -> tuple[str, int]:
        """Listen in a background thread; returns the address (``OSError`` if it cannot)."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="stow-rs", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(), loop)
            self._address = future.result(START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        log.info("STOW-RS on %s://%s:%d/studies", self.scheme, *self._address)
        return self._address

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        self._address = None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(_shut_down(runner), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(START_TIMEOUT_S)
        loop.close()

    async def _listen(self) -> tuple[str, int]:
        app = web.Application()
        app.router.add_post("/studies", self._serve)
        app.router.add_post("/studies/{study}", self._serve)
        runner = web.AppRunner(app, access_log=None)  # requests are logged by _serve
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=self._tls)
        await site.start()
        host, port = runner.addresses[0][:2]
        return str(host), int(port)

    # --- a request ----------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        """Answer one request; whatever goes wrong, the sender gets words, never a traceback."""
        try:
            self._admit(request)
            outcomes = await self._receive(request, request.match_info.get("study"))
        except RequestRefused as refused:
            return self._refuse(request, refused)
        except OSError as error:  # the sender went away mid-body: nobody to answer
            log.warning("STOW-RS request from %s broke off: %s", request.remote, error)
            return web.Response(status=400, text="the request body broke off\n")
        except Exception:
            log.exception("STOW-RS request from %s failed", request.remote)
            return web.Response(
                status=500, text="the collector could not store the request; see its log\n"
            )
        return self._answer(request, outcomes)

    def _admit(self, request: web.Request) -> None:
        """Refuse, before reading the body, a request from the wrong peer, without the
        token, of another media type, or declared larger than the request limit."""
        if not peer_allowed(request.remote, self.settings.allowed_peers):
            raise RequestRefused(403, "peer_not_allowed", "this address may not send")
        if self._token is not None and not bearer_token_matches(
            request.headers.get(hdrs.AUTHORIZATION, ""), self._token
        ):
            raise RequestRefused(401, "unauthenticated", "a valid bearer token is required")
        problem = media_type_problem(request.headers.get(hdrs.CONTENT_TYPE, ""))
        if problem is not None:
            raise RequestRefused(415, "unsupported_media_type", problem)
        declared = request.content_length
        if declared is not None and declared > self.settings.max_request_bytes:
            raise RequestRefused(413, "too_large", self._too_large(declared))

    async def _receive(self, request: web.Request, study: str | None) -> list[Outcome]:
        """Spool every part, then check and store each; nothing stays if the body fails."""
        spooled: list[_Spooled] = []
        outcomes: dict[int, Outcome] = {}
        try:
            try:
                reader = await request.multipart()
                number = 0
                while (part := await reader.next()) is not None:
                    number += 1
                    received = await self._spool(request, part, number)
                    if isinstance(received, FailedInstance):
                        outcomes[number] = received
                    else:
                        spooled.append(received)
            except (ValueError, RuntimeError, AssertionError) as error:
                # aiohttp's multipart parser raises these on a malformed body
                raise RequestRefused(
                    400, "malformed", f"not a readable multipart/related body ({error})"
                ) from None
            if not spooled and not outcomes:
                raise RequestRefused(400, "malformed", "the multipart body holds no instance")
            for item in spooled:
                outcomes[item.number] = await asyncio.to_thread(
                    accept_instance, item.path, study, self.inbox
                )
        finally:
            for item in spooled:
                item.path.unlink(missing_ok=True)  # stored ones were renamed away
        return [outcomes[number] for number in sorted(outcomes)]

    async def _spool(
        self, request: web.Request, part: BodyPartReader | MultipartReader, number: int
    ) -> _Spooled | FailedInstance:
        """Stream one part into a hidden inbox file, or drain it and say why not."""
        if not isinstance(part, BodyPartReader):
            await part.release()
            self._check_body(request)
            return _failed_part("not_dicom", "a nested multipart, not a DICOM instance")
        declared = part.headers.get(hdrs.CONTENT_TYPE, DICOM_MEDIA_TYPE)
        mime = parse_mimetype(declared)
        if f"{mime.type}/{mime.subtype}" != DICOM_MEDIA_TYPE:
            await self._drain(request, part)
            return _failed_part("not_dicom", f"part of type {declared}, not {DICOM_MEDIA_TYPE}")
        path = self.inbox / f".stow-{uuid.uuid4().hex}.dcm.part"
        size = 0
        limit = self.max_instance_bytes
        try:
            with path.open("wb") as spool:
                while chunk := await part.read_chunk(CHUNK_BYTES):
                    self._check_body(request)
                    size += len(chunk)
                    if limit is not None and size > limit:
                        break
                    spool.write(chunk)
        except BaseException:  # the request is refused or the sender went away midway
            path.unlink(missing_ok=True)
            raise
        if limit is not None and size > limit:
            path.unlink(missing_ok=True)
            await self._drain(request, part)
            return _failed_part(
                "too_large",
                f"more than the {limit} bytes an instance may have "
                "([collector.inbox] max_dicom_bytes)",
                FAILURE_OUT_OF_RESOURCES,
            )
        return _Spooled(number, path)

    async def _drain(self, request: web.Request, part: BodyPartReader) -> None:
        """Read past a part that will not be stored (the next one follows it)."""
        while await part.read_chunk(CHUNK_BYTES):
            self._check_body(request)

    def _check_body(self, request: web.Request) -> None:
        received = request.content.total_bytes
        if received > self.settings.max_request_bytes:
            raise RequestRefused(413, "too_large", self._too_large(received))

    def _too_large(self, size: int) -> str:
        return (
            f"the request body ({size} bytes) exceeds the {self.settings.max_request_bytes} "
            "bytes a request may have ([collector.stow_rs] max_request_bytes)"
        )

    # --- answers ------------------------------------------------------------------------------

    def _refuse(self, request: web.Request, refused: RequestRefused) -> web.Response:
        if self._metrics is not None:
            self._metrics.stow_requests_refused.labels(reason=refused.reason).inc()
        log.warning(
            "refused STOW-RS request from %s (%d): %s", request.remote, refused.status, refused
        )
        headers = {hdrs.WWW_AUTHENTICATE: 'Bearer realm="postmarket STOW-RS"'}
        return web.Response(
            status=refused.status,
            text=refused.message + "\n",
            headers=headers if refused.status == 401 else None,
        )

    def _answer(self, request: web.Request, outcomes: list[Outcome]) -> web.Response:
        warnings = []
        for number, outcome in enumerate(outcomes, start=1):
            if isinstance(outcome, FailedInstance):
                if self._metrics is not None:
                    self._metrics.files_rejected.labels(reason=outcome.reason).inc()
                log.warning(
                    "STOW-RS from %s: instance %d refused (%s): %s",
                    request.remote,
                    number,
                    outcome.reason,
                    outcome.detail,
                )
                warnings.append(warning_header(number, outcome.detail))
        stored = sum(isinstance(o, StoredInstance) for o in outcomes)
        log.info("STOW-RS from %s: %d of %d stored", request.remote, stored, len(outcomes))
        response = web.Response(
            status=response_status(outcomes),
            body=json.dumps(store_instances_response(outcomes)).encode(),
            content_type=RESPONSE_MEDIA_TYPE,
        )
        for warning in warnings:
            response.headers.add(hdrs.WARNING, warning)
        return response


def warning_header(number: int, detail: str) -> str:
    """A ``Warning`` header value naming a failed instance (ASCII, one line, no quotes)."""
    text = " ".join(detail.replace('"', "'").split())
    return f'299 postmarket "instance {number}: {text}"'.encode("ascii", "replace").decode()


async def _shut_down(runner: web.AppRunner | None) -> None:
    """Close the listener, then end what is left (a connection a refused sender holds)."""
    if runner is not None:
        await runner.cleanup()
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


def _failed_part(
    reason: RejectReason, detail: str, failure: int = FAILURE_CANNOT_UNDERSTAND
) -> FailedInstance:
    return FailedInstance(None, None, failure, reason, detail)


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer); refuses a key file others may read."""
    try:
        read_secret_file(key_file, "STOW-RS TLS key")
    except SecretFileError as error:
        raise SecretFileError(f"{secret_setting('stow_rs.tls_key_file')}: {error}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as error:
        raise StowRSConfigError(
            f"{setting_name('stow_rs.tls_cert_file')}: cannot load the STOW-RS TLS certificate "
            f"{cert_file} with its key: {error}"
        ) from None
    return context
