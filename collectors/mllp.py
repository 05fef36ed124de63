"""MLLP framing and HL7 acknowledgements, as pure functions over bytes and plain values.

MLLP (HL7's Minimal Lower Layer Protocol) wraps each message as ``0x0B message 0x1C 0x0D``
on a TCP stream, where writes and frames need not line up. :class:`MllpDeframer` turns
the bytes of one connection into whole frames while holding at most the size limit of
each message: past it, the rest of the message is skipped, not stored, and the frame is
marked oversize so it can be refused without losing the messages behind it.

An original-mode acknowledgement (``ACK``) answers each message: ``MSA-1`` is AA
(accepted), AE (an error in the message) or AR (refused: a size or message type the
collector does not take, or no room to store it now); ``MSA-2`` repeats the message's
control id (``MSH-10``) so the sender can match the answer to what it sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import hl7

AckCode = Literal["AA", "AE", "AR"]
OUTCOMES: dict[AckCode, str] = {"AA": "accepted", "AE": "errored", "AR": "refused"}
"""The ``outcome`` label of the messages metric, by acknowledgement code."""
REASONS: tuple[tuple[AckCode, str], ...] = (
    ("AA", "accepted"),
    ("AE", "bad_message"),
    ("AE", "bad_followup"),
    ("AR", "too_large"),
    ("AR", "wrong_message_type"),
    ("AR", "outbox_full"),
    ("AR", "collector_error"),
)
"""Every (code, reason) the listener answers with: ``bad_message`` cannot be parsed as
HL7 v2, ``bad_followup`` is an ORU^R01 with a result the mapping cannot use."""
IdleClosing = Literal["idle", "incomplete_message", "ack_not_read"]
"""Why a connection that made no progress for the idle timeout was closed: it sent
nothing, sent part of a message and no end, or read none of its acknowledgements."""
ConnectionClosing = Literal["peer_not_allowed"] | IdleClosing
CONNECTION_CLOSINGS: tuple[ConnectionClosing, ...] = (
    "peer_not_allowed",
    "idle",
    "incomplete_message",
    "ack_not_read",
)
"""Every reason the listener closes a connection it accepted (a peer not on the allow-list
is closed at once, unread)."""

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
END_OF_FRAME = END_BLOCK + b"\r"
MAX_ACK_TEXT_CHARS = 80
"""MSA-3 (text message) is an ST of at most 80 characters in HL7 v2.5."""
ACK_ESCAPE = hl7.parse("MSH|^~\\&|")
"""A header with the standard separators: acknowledgements are written with them."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MllpFrame:
    """One framed message: its bytes (at most the limit) and the size it really had."""

    content: bytes
    size: int

    @property
    def oversize(self) -> bool:
        return self.size > len(self.content)


class MllpDeframer:
    """Splits one connection's bytes into frames, each held to ``max_message_bytes``.

    Bytes outside a frame (a stray newline between messages) are ignored. A frame longer
    than the limit keeps its first ``max_message_bytes`` (whose MSH still names the
    message) and its true size.

    >>> deframer = MllpDeframer(max_message_bytes=8)
    >>> deframer.feed(b"\\x0bMSH|one\\x1c")
    []
    >>> deframer.feed(b"\\r\\n\\x0bMSH|two, too long\\x1c\\r")
    [MllpFrame(content=b'MSH|one', size=7), MllpFrame(content=b'MSH|two,', size=17)]
    """

    def __init__(self, max_message_bytes: int) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self._unread = bytearray()
        self._message = bytearray()
        self._size = 0
        self._in_frame = False

    def feed(self, data: bytes) -> list[MllpFrame]:
        """The frames that ``data`` completes, in order."""
        self._unread += data
        frames: list[MllpFrame] = []
        while self._unread:
            if not self._in_frame:
                start = self._unread.find(START_BLOCK)
                if start < 0:
                    self._unread.clear()
                    break
                del self._unread[: start + 1]
                self._in_frame = True
            end = self._unread.find(END_OF_FRAME)
            if end < 0:
                # A trailing 0x1C may be the first half of the end marker: keep it for
                # the next write.
                keep = 1 if self._unread.endswith(END_BLOCK) else 0
                self._take(self._unread[: len(self._unread) - keep])
                del self._unread[: len(self._unread) - keep]
                break
            self._take(self._unread[:end])
            del self._unread[: end + len(END_OF_FRAME)]
            frames.append(MllpFrame(bytes(self._message), self._size))
            self._message.clear()
            self._size = 0
            self._in_frame = False
        return frames

    @property
    def partial_bytes(self) -> int:
        """Bytes of a message begun and not yet ended (lost if the connection closes)."""
        return self._size + len(self._unread) if self._in_frame else 0

    def _take(self, part: bytes | bytearray) -> None:
        room = self.max_message_bytes - len(self._message)
        if room > 0:
            self._message += part[:room]
        self._size += len(part)


def frame(message: bytes) -> bytes:
    """``message`` wrapped for MLLP."""
    return START_BLOCK + message + END_OF_FRAME


@dataclass(frozen=True)
class ReplyTo:
    """What an acknowledgement copies from the header (MSH) of the message it answers."""

    control_id: str = ""
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"

    @classmethod
    def of(cls, message: hl7.Message) -> ReplyTo:
        header = message[0]

        def value(field: int, number: int = 1) -> str:
            try:
                return str(header.extract_field(field_num=field, component_num=number)).strip()
            except IndexError:  # a component asked of a plain value
                return ""

        return cls(
            control_id=value(10),
            sending_application=value(3),
            sending_facility=value(4),
            receiving_application=value(5),
            receiving_facility=value(6),
            trigger=value(9, 2),
            processing_id=value(11) or "P",
            version=value(12) or "2.5.1",
        )

    @classmethod
    def of_head(cls, head: str) -> ReplyTo:
        """Best effort from the first segment of a message that cannot be read whole."""
        first = head.lstrip().split("\r", 1)[0].split("\n", 1)[0]
        if not first.startswith("MSH") or len(first) < 8:
            return cls()
        try:
            return cls.of(hl7.parse(first))
        except Exception:  # noqa: BLE001 - any failure leaves the header unknown, nothing more
            return cls()


def acknowledgement(
    reply: ReplyTo, code: AckCode, text: str, now: datetime, message_id: str
) -> bytes:
    """An original-mode ``ACK`` (not yet framed): sender and receiver swapped, MSA-1 ``code``,
    MSA-2 the answered control id, MSA-3 ``text`` cut to :data:`MAX_ACK_TEXT_CHARS`."""

    def escaped(value: str) -> str:
        return str(ACK_ESCAPE.escape(value))

    if len(text) > MAX_ACK_TEXT_CHARS:
        text = text[: MAX_ACK_TEXT_CHARS - 3] + "..."
    header = "|".join(
        (
            "MSH",
            "^~\\&",
            escaped(reply.receiving_application),
            escaped(reply.receiving_facility),
            escaped(reply.sending_application),
            escaped(reply.sending_facility),
            now.strftime("%Y%m%d%H%M%S%z"),
            "",
            f"ACK^{escaped(reply.trigger)}^ACK",
            escaped(message_id),
            escaped(reply.processing_id),
            escaped(reply.version),
        )
    )
    ack = "|".join(("MSA", code, escaped(reply.control_id), *([escaped(text)] if text else [])))
    return f"{header}\r{ack}\r".encode()


def peer_networks(peers: Iterable[str]) -> tuple[IpNetwork, ...]:
    """The allow-list as networks (an address is its own /32 or /128)."""
    return tuple(ipaddress.ip_network(peer, strict=False) for peer in peers)


def peer_allowed(host: str, networks: Iterable[IpNetwork]) -> bool:
    """Whether a connection from ``host`` may deliver; an IPv4 peer on an IPv6 socket
    (``::ffff:10.0.0.5``) counts as its IPv4 address.

    >>> nets = peer_networks(["10.20.0.0/24", "::1"])
    >>> [peer_allowed(h, nets) for h in ("10.20.0.7", "::ffff:10.20.0.7", "10.20.1.7", "::1")]
    [True, True, False, True]
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
