"""An MLLP listener, so interface engines (Mirth/NextGen Connect, Rhapsody, Cloverleaf)
deliver ORU^R01 results over TCP as they do to any HL7 system.

Each message is parsed and mapped exactly as an HL7 file in the inbox is
(:mod:`collectors.hl7_followups`), and its follow-ups go through the same
:meth:`~collectors.intake.Intake.accept_followup`, so pseudonymisation, linking by
accession and the outbox limit are the same. The acknowledgement is written only after
:meth:`~collectors.intake.Intake.accept_followup` returned, that is once the follow-up is
in the outbox (or, for an accession not seen yet, in the case index) on disk: a sender
that got AA may forget the message. AE answers a message the collector cannot use as it
is (unparseable, no usable result); AR one it will not take (above the size limit, not
ORU^R01, or no room in the outbox now). A bad message is answered, counted and logged
without its content; the connection goes on.

At most ``max_connections`` connections are served at once (each may buffer a whole
message, so this bounds memory); one more is closed unread, logged and counted. No peer
holds one of those slots for nothing: a peer not on the allow-list is closed at once,
unread, and a connection that completes no message for ``idle_timeout_s`` (silent, or
inside a message that never ends, or not reading its acknowledgements) is closed; each
closing is logged and counted by reason. An engine reconnects when it next has a message.

The listener runs an asyncio loop in its own thread; storing happens in worker threads,
so a slow disk delays only the connection whose message is being stored.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.dicom_input import RejectedFile
from collectors.followups import FollowUpRecord
from collectors.hl7_followups import (
    RESULT_MESSAGE_TYPE,
    followups_of_message,
    message_type,
    parse_message,
)
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.mllp import (
    OUTCOMES,
    AckCode,
    ConnectionClosing,
    IdleClosing,
    IpNetwork,
    MllpDeframer,
    MllpFrame,
    ReplyTo,
    acknowledgement,
    frame,
    peer_allowed,
    peer_networks,
)
from collectors.outbox import OutboxFull
from collectors.settings import CollectorConfigError, CollectorSettings, Hl7FollowUpMapping
from collectors.settings_environment import secret_setting, setting_name
from postmarket.secrets import SecretFileError, looks_like_path, read_secret_file

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
"""How long closing waits for the peer to take what was written before dropping it."""


class MllpListenerError(OSError):
    """The listener cannot start (the port is taken, the TLS files are unusable); an
    OSError, as the other ports' failures are, so the CLI shows it in one line."""


@dataclass(frozen=True)
class MllpEndpoint:
    """Where the listener binds, whom it hears, how much it buffers (per message and in
    connections at once), how long a connection may go without a message, and its TLS
    files."""

    host: str = "127.0.0.1"
    port: int = 2575
    allowed_peers: tuple[IpNetwork, ...] = field(
        default_factory=lambda: peer_networks(("127.0.0.1", "::1"))
    )
    max_message_bytes: int = 8 * 1024**2
    max_connections: int = 16
    idle_timeout_s: float = 300.0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> MllpEndpoint:
        if settings.mllp_port is None:
            raise CollectorConfigError("mllp_port is not set")
        return cls(
            host=settings.mllp_host,
            port=settings.mllp_port,
            allowed_peers=peer_networks(settings.mllp_allowed_peers),
            max_message_bytes=settings.mllp_max_message_bytes,
            max_connections=settings.mllp_max_connections,
            idle_timeout_s=settings.mllp_idle_timeout_s,
            tls_cert_file=settings.mllp_tls_cert_file,
            tls_key_file=settings.mllp_tls_key_file,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """A TLS 1.2+ server context, or None without TLS files; refuses a readable key."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        try:
            read_secret_file(self.tls_key_file, "MLLP TLS key")
        except SecretFileError as error:
            raise MllpListenerError(f"{secret_setting('mllp_tls_key_file')}: {error}") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file))
        except (OSError, ssl.SSLError) as error:
            # A certificate is no secret, but a PEM pasted where its path belongs is no
            # one-line message either.
            shown = str(self.tls_cert_file)
            certificate = shown if looks_like_path(shown) else "(the value is not a file path)"
            raise MllpListenerError(
                f"{setting_name('mllp_tls_cert_file')}: cannot load MLLP TLS certificate "
                f"{certificate} with its key: {error}"
            ) from None
        return context


@dataclass(frozen=True)
class Verdict:
    """How a message is answered (code, metric reason, MSA-3 text) and what it stores."""

    code: AckCode
    reason: str
    text: str
    reply: ReplyTo
    records: tuple[FollowUpRecord, ...] = ()
    refused_results: tuple[str, ...] = ()


def assess(message_frame: MllpFrame, mapping: Hl7FollowUpMapping) -> Verdict:
    """What to do with one framed message from an allowed peer, before anything is stored
    (pure)."""
    text = message_frame.content.decode("utf-8", errors="replace")
    if message_frame.oversize:
        return Verdict(
            "AR",
            "too_large",
            f"{message_frame.size} bytes is more than mllp_max_message_bytes "
            f"({len(message_frame.content)})",
            ReplyTo.of_head(text),
        )
    try:
        message = parse_message(text)
    except ValueError as error:
        return Verdict(
            "AE", "bad_message", f"not an HL7 v2 message ({error})", ReplyTo.of_head(text)
        )
    reply = ReplyTo.of(message)
    kind = message_type(message)
    if kind != RESULT_MESSAGE_TYPE:
        return Verdict(
            "AR", "wrong_message_type", f"message type {kind} is not {RESULT_MESSAGE_TYPE}", reply
        )
    try:
        parsed = followups_of_message(f"message {reply.control_id}", message, mapping)
    except RejectedFile as rejected:
        return Verdict("AE", "bad_followup", rejected.detail, reply)
    refused = tuple(problem.detail for problem in parsed.rejected)
    if not parsed.records:
        return Verdict("AE", "bad_followup", "; ".join(refused), reply)
    return Verdict("AA", "accepted", "", reply, tuple(parsed.records), refused)


def after_storing(verdict: Verdict) -> Verdict:
    """The answer once the records are stored: AE if some results of the message were not
    usable (the stored ones stay; a resend of the whole message repeats their event ids)."""
    if not verdict.refused_results:
        return verdict
    stored = len(verdict.records)
    total = stored + len(verdict.refused_results)
    text = f"{stored} of {total} results stored; " + "; ".join(verdict.refused_results)
    return Verdict("AE", "bad_followup", text, verdict.reply, verdict.records)


class MllpListener:
    """Receives ORU^R01 results over MLLP into the :class:`Intake`, acknowledging each."""

    def __init__(
        self,
        endpoint: MllpEndpoint,
        mapping: Hl7FollowUpMapping,
        intake: Intake,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.mapping = mapping
        self.intake = intake
        self._metrics = metrics
        self._tls = endpoint.tls_context()  # refuses unusable TLS files before binding
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    @property
    def open_connections(self) -> int:
        """Connections being served now (at most ``endpoint.max_connections``)."""
        return len(self._connections)

    # --- lifecycle (from the collector's threads) ---------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind and serve from a daemon thread; the bound (host, port), or raise why not."""
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_log_loop_problem)
        bound: list[tuple[str, int] | BaseException] = []
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                bound.append(loop.run_until_complete(self._open()))
            except OSError as error:
                bound.append(error)
            ready.set()
            if isinstance(bound[0], BaseException):
                loop.close()
                return
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="mllp", daemon=True)
        self._thread.start()
        ready.wait(START_TIMEOUT_S)
        result = bound[0] if bound else TimeoutError("no answer from the listener thread")
        if isinstance(result, BaseException):
            self._thread.join(STOP_TIMEOUT_S)
            where = f"{self.endpoint.host}:{self.endpoint.port}"
            detail = getattr(result, "strerror", None) or str(result)
            raise MllpListenerError(f"cannot listen for MLLP on {where}: {detail}")
        self.address = result
        log.info(
            "MLLP listener on %s:%d%s for %s",
            *result,
            " (TLS)" if self._tls else "",
            ", ".join(str(network) for network in self.endpoint.allowed_peers),
        )
        return result

    def stop(self) -> None:
        """Stop listening and close every connection; a message being stored is finished."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        with suppress(RuntimeError, TimeoutError):  # the loop already ended
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(STOP_TIMEOUT_S)
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)

    # --- on the loop --------------------------------------------------------------------------

    async def _open(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._serve_connection,
            self.endpoint.host,
            self.endpoint.port,
            ssl=self._tls,
            limit=READ_CHUNK_BYTES,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername: Any = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "unknown"
        if not peer_allowed(peer, self.endpoint.allowed_peers):
            await self._close_unread(writer, peer)
            return
        if len(self._connections) >= self.endpoint.max_connections:
            await self._refuse_connection(writer, peer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        deframer = MllpDeframer(self.endpoint.max_message_bytes)
        timed_out: IdleClosing | None = None
        try:
            timed_out = await self._converse(reader, writer, deframer, peer)
        except OSError as error:
            log.info("MLLP connection from %s ended: %s", peer, type(error).__name__)
        except asyncio.CancelledError:
            pass  # the listener is stopping; ending quietly keeps asyncio from reporting it
        finally:
            if timed_out is not None:
                self._count_closing(timed_out)
                log.log(
                    logging.INFO if timed_out == "idle" else logging.WARNING,
                    "MLLP connection from %s closed: %s",
                    peer,
                    _idle_closing_text(timed_out, deframer.partial_bytes, self.endpoint),
                )
            elif deframer.partial_bytes:
                log.warning(
                    "MLLP connection from %s closed inside a message (%d bytes, not "
                    "acknowledged: the sender resends it)",
                    peer,
                    deframer.partial_bytes,
                )
            await _close(writer, at_once=timed_out == "ack_not_read")
            if task is not None:
                self._connections.discard(task)

    async def _converse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deframer: MllpDeframer,
        peer: str,
    ) -> IdleClosing | None:
        """Answer each message until the peer closes (None) or lets ``idle_timeout_s`` pass
        without completing a message or reading an acknowledgement (why it was closed).

        The clock restarts after each acknowledgement, so storing a message never counts
        against the peer, and a message trickling in a byte at a time gets no longer than
        a silent connection: its slot is not held past the timeout either.
        """
        idle_timeout_s = self.endpoint.idle_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(READ_CHUNK_BYTES)
            except TimeoutError:
                return "incomplete_message" if deframer.partial_bytes else "idle"
            if not data:
                return None
            message_frames = deframer.feed(data)
            for message_frame in message_frames:
                writer.write(frame(await self._answer(message_frame, peer)))
                try:
                    async with asyncio.timeout(idle_timeout_s):
                        await writer.drain()
                except TimeoutError:
                    return "ack_not_read"
            if message_frames:
                deadline = loop.time() + idle_timeout_s

    async def _refuse_connection(self, writer: asyncio.StreamWriter, peer: str) -> None:
        """Close a connection beyond ``max_connections`` unread: the engine reconnects later."""
        if self._metrics is not None:
            self._metrics.mllp_connections_refused.inc()
        log.warning(
            "MLLP connection from %s closed: %d connections are open (mllp_max_connections)",
            peer,
            self.endpoint.max_connections,
        )
        await _close(writer)

    async def _close_unread(self, writer: asyncio.StreamWriter, peer: str) -> None:
        """Close a connection from a peer not on the allow-list before reading anything, so
        it never holds a slot (nothing it could send would be used)."""
        self._count_closing("peer_not_allowed")
        log.warning(
            "MLLP connection from %s closed unread: not in mllp_allowed_peers (add the "
            "interface engine's address there if it should send)",
            peer,
        )
        await _close(writer)

    def _count_closing(self, reason: ConnectionClosing) -> None:
        if self._metrics is not None:
            self._metrics.mllp_connections_closed.labels(reason=reason).inc()

    async def _answer(self, message_frame: MllpFrame, peer: str) -> bytes:
        """Assess, store, count and log one message; its acknowledgement."""
        try:
            verdict = assess(message_frame, self.mapping)
        except Exception as error:  # a parser bug on odd input costs this message only
            log.error("MLLP message from %s could not be read (%s)", peer, type(error).__name__)
            verdict = Verdict(
                "AE", "bad_message", f"could not be read ({type(error).__name__})", ReplyTo()
            )
        if verdict.records:
            try:
                await asyncio.to_thread(self._store, verdict.records)
                verdict = after_storing(verdict)
            except OutboxFull:
                verdict = Verdict("AR", "outbox_full", "outbox full: resend later", verdict.reply)
            except Exception as error:  # a bug or a disk error must not end the connection
                log.error(
                    "MLLP message %s from %s could not be stored (%s)",
                    verdict.reply.control_id,
                    peer,
                    type(error).__name__,
                )
                verdict = Verdict(
                    "AR", "collector_error", "not stored: see the collector log", verdict.reply
                )
        if self._metrics is not None:
            self._metrics.mllp_messages.labels(
                outcome=OUTCOMES[verdict.code], reason=verdict.reason
            ).inc()
        if verdict.code != "AA":
            log.warning(
                "MLLP message %s from %s answered %s: %s",
                verdict.reply.control_id or "(no control id)",
                peer,
                verdict.code,
                verdict.text,
            )
        return acknowledgement(
            verdict.reply, verdict.code, verdict.text, datetime.now(UTC), _message_id()
        )

    def _store(self, records: Sequence[FollowUpRecord]) -> None:
        for record in records:
            self.intake.accept_followup(record)


def _message_id() -> str:
    """A control id for an acknowledgement (MSH-10 holds at most 20 characters)."""
    return uuid.uuid4().hex[:20]


async def _close(writer: asyncio.StreamWriter, at_once: bool = False) -> None:
    """Close a connection, at once (discarding unsent bytes) or after sending what is
    written; a peer that reads nothing would keep the latter, and its slot, waiting."""
    if at_once:
        writer.transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (OSError, asyncio.CancelledError):
        pass  # already gone, or the listener is stopping


def _idle_closing_text(reason: IdleClosing, partial_bytes: int, endpoint: MllpEndpoint) -> str:
    """Why a connection was closed for lack of progress, in words for the log."""
    waited = f"{endpoint.idle_timeout_s:g} s (mllp_idle_timeout_s)"
    if reason == "incomplete_message":
        return (
            f"a message ({partial_bytes} bytes so far) did not end within {waited}; "
            "not acknowledged (check the sender frames messages 0x0B ... 0x1C 0x0D)"
        )
    if reason == "ack_not_read":
        return f"it read no acknowledgement for {waited}"
    return f"no message for {waited}; the engine reconnects when it has one"


def _log_loop_problem(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own reports (a failed TLS handshake, a reset socket) as one log line."""
    error = context.get("exception")
    detail = f"{type(error).__name__}: {error}" if error is not None else ""
    log.warning("MLLP listener: %s %s", context.get("message", ""), detail)
