"""The MLLP listener, over real TCP: an interface engine's ORU^R01 results become outbox
events before their AA is sent; bad, oversize and wrong-type messages get AE or AR naming
their control id, are counted, and never cost the connection its other messages; a
foreign peer, a silent one and a message that never ends hold no connection slot."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from site_settings import site_settings

from collectors.case_index import CaseIndex
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.mllp import MllpDeframer, MllpFrame, frame, peer_networks
from collectors.mllp_listener import MllpEndpoint, MllpListener, MllpListenerError, assess
from collectors.outbox import Outbox
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.service import Collector
from collectors.settings import (
    CollectorConfigError,
    FollowUpMappings,
    Hl7FollowUpMapping,
    load_settings,
)
from postmarket.contracts import Contract
from tests.tls_certificates import self_signed_certificate

KEY = PseudonymKey(b"mllp-test-site-secret-0123456789abcdefghij")
MAPPING = Hl7FollowUpMapping(
    identifier_field="OBR-3",
    identifier_kind="study_instance_uid",
    label_values={"M-80003": "positive", "benign": "negative"},
    observation_id="22634-0",
)
MAX_MESSAGE_BYTES = 4096
STORE_DELAY_S = 0.2
"""Each put waits this long first: an ACK sent before the put returned would overtake it."""
MESSAGES = "postmarket_collector_mllp_messages_total"


def oru(control_id: str, study_uid: str = "1.2.840.99.1", value: str = "M-80003") -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|PATHLAB|HOSP|PMS|HOSP|20260403101500||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            "PID|1||PAT123^^^HOSP^MR||DOE^JANE||19600101|F",
            f"OBR|1|ORD1|{study_uid}|88305^Surgical pathology|||202604031015+0200",
            f"OBX|1|CWE|22634-0^Pathology report impression||{value}^Finding||||||F",
        ]
    ).encode()


class SlowOutbox(Outbox):
    """An outbox whose puts take a while and note when they returned."""

    stored_at: list[float]

    def put(self, event: Contract) -> bool:
        time.sleep(STORE_DELAY_S)
        stored = super().put(event)
        self.stored_at.append(time.monotonic())
        return stored


class Site:
    def __init__(self, root: Path, outbox_max_bytes: int = 1024**2) -> None:
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics.create(self.registry)
        self.outbox = SlowOutbox(root / "outbox.db", max_bytes=outbox_max_bytes, metrics=metrics)
        self.outbox.stored_at = []
        self.cases = CaseIndex(root / "cases.db")
        self.intake = Intake("site-a", KEY, self.outbox, self.cases, metrics)
        self.metrics = metrics

    def listen(self, **endpoint: Any) -> MllpListener:
        """A started listener for 127.0.0.1 only, on a free port; ``endpoint`` overrides."""
        defaults = MllpEndpoint(
            port=0,
            allowed_peers=peer_networks(["127.0.0.1"]),
            max_message_bytes=MAX_MESSAGE_BYTES,
        )
        listener = MllpListener(replace(defaults, **endpoint), MAPPING, self.intake, self.metrics)
        listener.start()
        return listener

    def count(self, outcome: str, reason: str) -> float | None:
        return self.registry.get_sample_value(MESSAGES, {"outcome": outcome, "reason": reason})

    def queued_cases(self) -> list[bytes]:
        return [pending.record.key for pending in self.outbox.pending()]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    yield site
    site.outbox.close()
    site.cases.close()


@pytest.fixture
def listener(site: Site) -> Iterator[tuple[str, int]]:
    server = site.listen()
    assert server.address is not None
    yield server.address
    server.stop()


def connect(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    client = socket.create_connection(address, timeout=10, source_address=(source, 0))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def read_acks(client: socket.socket, count: int) -> list[hl7.Message]:
    """The next ``count`` acknowledgements, parsed (failing on a timeout)."""
    buffer = b""
    while buffer.count(b"\x1c\r") < count:
        data = client.recv(65536)
        assert data, f"connection closed before {count} ACKs arrived"
        buffer += data
    frames = [part for part in buffer.split(b"\x1c\r") if part]
    assert len(frames) == count and all(part.startswith(b"\x0b") for part in frames)
    return [hl7.parse(part[1:].decode()) for part in frames]


def msa(ack: hl7.Message) -> tuple[str, str]:
    """(MSA-1 acknowledgement code, MSA-2 control id of the answered message)."""
    segment = ack.segment("MSA")
    return str(segment(1)), str(segment(2))


def msa_text(ack: hl7.Message) -> str:
    """MSA-3, the text that says why, unescaped."""
    return str(ack.segment("MSA").extract_field(field_num=3))


def test_result_is_in_the_outbox_before_its_aa_arrives(
    site: Site, listener: tuple[str, int]
) -> None:
    with connect(listener) as client:
        client.sendall(frame(oru("CTRL0001")))
        (ack,) = read_acks(client, 1)
        received_at = time.monotonic()
    assert msa(ack) == ("AA", "CTRL0001")
    assert str(ack.segment("MSH")(9)) == "ACK^R01^ACK"
    assert site.outbox.stored_at and site.outbox.stored_at[0] <= received_at
    assert site.queued_cases() == [case_pseudonym(KEY, "1.2.840.99.1").encode()]
    assert b"1.2.840.99.1" not in site.outbox.pending()[0].record.value  # pseudonymised
    assert site.count("accepted", "accepted") == 1


def test_several_messages_on_one_connection_are_acknowledged_in_order(
    site: Site, listener: tuple[str, int]
) -> None:
    messages = [oru(f"CTRL{n}", study_uid=f"1.2.840.99.{n}") for n in range(3)]
    with connect(listener) as client:
        client.sendall(b"".join(frame(message) for message in messages))
        acks = read_acks(client, 3)
    assert [msa(ack) for ack in acks] == [("AA", "CTRL0"), ("AA", "CTRL1"), ("AA", "CTRL2")]
    assert len(site.queued_cases()) == 3


def test_message_split_across_writes_is_acknowledged_once(
    site: Site, listener: tuple[str, int]
) -> None:
    framed = frame(oru("SPLIT01"))
    cuts = [0, 1, 40, len(framed) - 1, len(framed)]  # inside the MSH and between 0x1C and CR
    with connect(listener) as client:
        for start, end in zip(cuts, cuts[1:], strict=False):
            client.sendall(framed[start:end])
            time.sleep(0.05)
        client.sendall(frame(oru("AFTER01", study_uid="1.2.840.99.7")))
        acks = read_acks(client, 2)
    assert [msa(ack) for ack in acks] == [("AA", "SPLIT01"), ("AA", "AFTER01")]
    assert len(site.queued_cases()) == 2


def test_oversize_message_is_refused_and_the_next_one_accepted(
    site: Site, listener: tuple[str, int]
) -> None:
    oversize = oru("BIG00001") + b"\rNTE|1||" + b"x" * (2 * MAX_MESSAGE_BYTES)
    with connect(listener) as client:
        client.sendall(frame(oversize) + frame(oru("SMALL001")))
        refused, accepted = read_acks(client, 2)
    assert msa(refused) == ("AR", "BIG00001")
    assert "mllp_max_message_bytes" in msa_text(refused)
    assert msa(accepted) == ("AA", "SMALL001")
    assert len(site.queued_cases()) == 1
    assert site.count("refused", "too_large") == 1


def test_message_other_than_oru_r01_is_refused(site: Site, listener: tuple[str, int]) -> None:
    admission = oru("ADT00001").replace(b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01")
    with connect(listener) as client:
        client.sendall(frame(admission))
        (ack,) = read_acks(client, 1)
    assert msa(ack) == ("AR", "ADT00001")
    assert msa_text(ack) == "message type ADT^A01 is not ORU^R01"
    assert site.queued_cases() == []
    assert site.count("refused", "wrong_message_type") == 1


def test_malformed_message_gets_ae_and_the_connection_goes_on(
    site: Site, listener: tuple[str, int]
) -> None:
    with connect(listener) as client:
        client.sendall(frame(b"PID|1||garbage") + frame(oru("GOOD0001")))
        malformed, good = read_acks(client, 2)
    assert msa(malformed) == ("AE", "")  # no header, so no control id to repeat
    assert "not an HL7 v2 message" in msa_text(malformed)
    assert msa(good) == ("AA", "GOOD0001")
    assert site.count("errored", "bad_message") == 1


def test_refused_message_is_logged_without_its_content(
    site: Site, listener: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    # A report line broken by an unescaped newline: the text after it is no segment.
    broken = oru("BROKEN01").replace(b"\rOBR|", b"\rJane Doe, born 1960-01-01\rOBR|")
    with caplog.at_level(logging.DEBUG), connect(listener) as client:
        client.sendall(frame(broken))
        (ack,) = read_acks(client, 1)
    assert msa(ack) == ("AE", "BROKEN01")
    assert "segment 3 does not start with a segment name" in msa_text(ack)
    assert "BROKEN01" in caplog.text and "Jane" not in caplog.text


def test_result_the_mapping_cannot_use_gets_ae_and_stores_nothing(
    site: Site, listener: tuple[str, int]
) -> None:
    with connect(listener) as client:
        client.sendall(frame(oru("UNMAPPED", value="M-99999")))
        (ack,) = read_acks(client, 1)
    assert msa(ack) == ("AE", "UNMAPPED")
    assert "no final OBX value is in label_values" in msa_text(ack)
    assert site.queued_cases() == []
    assert site.count("errored", "bad_followup") == 1


def test_message_with_one_unusable_result_stores_the_rest_and_says_so(
    site: Site, listener: tuple[str, int]
) -> None:
    usable, unusable = oru("PART0001").split(b"\rOBR"), oru("X", value="M-99999")
    message = usable[0] + b"\rOBR" + usable[1] + b"\r" + unusable.split(b"\r", 2)[2]
    with connect(listener) as client:
        client.sendall(frame(message))
        (ack,) = read_acks(client, 1)
    assert msa(ack) == ("AE", "PART0001")
    assert msa_text(ack).startswith("1 of 2 results stored; OBR 2: no final OBX value")
    assert len(site.queued_cases()) == 1


def test_result_for_an_accession_not_seen_yet_is_accepted_and_waits(site: Site) -> None:
    by_accession = MAPPING.model_copy(update={"identifier_kind": "accession_number"})
    server = MllpListener(
        MllpEndpoint(port=0, allowed_peers=peer_networks(["127.0.0.1"])),
        by_accession,
        site.intake,
        site.metrics,
    )
    address = server.start()
    try:
        with connect(address) as client:
            client.sendall(frame(oru("EARLY001", study_uid="ACC-77")))
            (ack,) = read_acks(client, 1)
    finally:
        server.stop()
    assert msa(ack) == ("AA", "EARLY001")
    assert site.queued_cases() == []  # nothing to send until the study is seen
    assert site.cases.waiting_counts()["followup"] == 1


def test_full_outbox_refuses_with_ar_so_the_engine_resends(tmp_path: Path) -> None:
    site = Site(tmp_path, outbox_max_bytes=16)
    server = site.listen()
    assert server.address is not None
    try:
        with connect(server.address) as client:
            client.sendall(frame(oru("FULL0001")))
            (ack,) = read_acks(client, 1)
    finally:
        server.stop()
        site.outbox.close()
        site.cases.close()
    assert msa(ack) == ("AR", "FULL0001")
    assert site.count("refused", "outbox_full") == 1


REFUSED_CONNECTIONS = "postmarket_collector_mllp_connections_refused_total"


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_connections_beyond_the_cap_are_closed_counted_and_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 2
    server = site.listen(max_connections=cap)
    assert server.address is not None
    assert site.registry.get_sample_value(REFUSED_CONNECTIONS) == 0  # visible from the start
    open_clients = [connect(server.address) for _ in range(cap)]
    try:
        for n, client in enumerate(open_clients):  # the first `cap` are served
            client.sendall(frame(oru(f"CAP{n:05d}", study_uid=f"1.2.840.99.{n}")))
            assert msa(read_acks(client, 1)[0]) == ("AA", f"CAP{n:05d}")
        with caplog.at_level(logging.WARNING), connect(server.address) as extra:
            assert extra.recv(1024) == b""  # closed by the server, unread
        assert site.registry.get_sample_value(REFUSED_CONNECTIONS) == 1
        refusals = [r for r in caplog.records if "mllp_max_connections" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
        open_clients.pop().close()
        wait_until(lambda: server.open_connections < cap)
        with connect(server.address) as again:  # room again: served
            again.sendall(frame(oru("AGAIN001", study_uid="1.2.840.99.9")))
            assert msa(read_acks(again, 1)[0]) == ("AA", "AGAIN001")
        assert site.registry.get_sample_value(REFUSED_CONNECTIONS) == 1
    finally:
        for client in open_clients:
            client.close()
        server.stop()


def test_max_connections_comes_from_the_settings(tmp_path: Path) -> None:
    settings = site_settings(
        tmp_path, mllp_port=0, mllp_max_connections=3, followups=FollowUpMappings(hl7=MAPPING)
    )
    assert MllpEndpoint.from_settings(settings).max_connections == 3
    assert site_settings(tmp_path).mllp_max_connections == 16


@pytest.mark.parametrize("count", [0, 100_000])
def test_max_connections_is_bounded(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValidationError, match="mllp_max_connections"):
        site_settings(tmp_path, mllp_max_connections=count)


# --- connections that hold a slot for nothing ---------------------------------------------------

CLOSED_CONNECTIONS = "postmarket_collector_mllp_connections_closed_total"
IDLE_TIMEOUT_S = 0.5


def closed(site: Site, reason: str) -> float | None:
    return site.registry.get_sample_value(CLOSED_CONNECTIONS, {"reason": reason})


def test_peer_outside_the_allow_list_is_closed_unread_and_holds_no_slot(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    server = site.listen(max_connections=1)
    assert server.address is not None
    try:
        with caplog.at_level(logging.WARNING):
            foreign = connect(server.address, source="127.0.0.2")  # all of 127/8 is loopback
        with foreign:  # kept open by the foreign peer, closed by the listener
            assert foreign.recv(1024) == b""
            wait_until(lambda: server.open_connections == 0)
            with connect(server.address) as engine:  # the only slot is the engine's
                engine.sendall(frame(oru("ENGINE01")))
                assert msa(read_acks(engine, 1)[0]) == ("AA", "ENGINE01")
    finally:
        server.stop()
    assert closed(site, "peer_not_allowed") == 1
    assert site.registry.get_sample_value(REFUSED_CONNECTIONS) == 0
    (warning,) = [r for r in caplog.records if "127.0.0.2" in r.getMessage()]
    assert "not in mllp_allowed_peers" in warning.getMessage()


def test_silent_connection_is_closed_after_the_idle_timeout_and_frees_its_slot(
    site: Site,
) -> None:
    server = site.listen(max_connections=1, idle_timeout_s=IDLE_TIMEOUT_S)
    assert server.address is not None
    assert closed(site, "idle") == 0  # visible from the start
    try:
        with connect(server.address) as silent:
            connected_at = time.monotonic()
            assert silent.recv(1024) == b""  # closed by the listener
            waited = time.monotonic() - connected_at
        assert IDLE_TIMEOUT_S * 0.9 <= waited < IDLE_TIMEOUT_S + 5
        wait_until(lambda: server.open_connections == 0)
        with connect(server.address) as engine:
            engine.sendall(frame(oru("NEXT0001")))
            assert msa(read_acks(engine, 1)[0]) == ("AA", "NEXT0001")
    finally:
        server.stop()
    assert closed(site, "idle") == 1


def test_message_that_never_ends_is_closed_unacknowledged_after_the_idle_timeout(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    server = site.listen(max_connections=1, idle_timeout_s=IDLE_TIMEOUT_S)
    assert server.address is not None
    try:
        with caplog.at_level(logging.WARNING), connect(server.address) as stuck:
            stuck.sendall(frame(oru("NOEND001"))[:-2])  # no 0x1C 0x0D
            assert stuck.recv(1024) == b""  # closed, no ACK
        wait_until(lambda: server.open_connections == 0)
    finally:
        server.stop()
    assert closed(site, "incomplete_message") == 1 and closed(site, "idle") == 0
    assert site.queued_cases() == []
    (warning,) = [r for r in caplog.records if "mllp_idle_timeout_s" in r.getMessage()]
    assert "did not end within 0.5 s" in warning.getMessage()
    assert "NOEND001" not in caplog.text  # nothing of the message is logged


def test_message_trickling_in_gets_no_longer_than_a_silent_connection(site: Site) -> None:
    """The clock runs from the last complete message, not the last byte: a byte at a time
    cannot hold a slot."""
    server = site.listen(idle_timeout_s=IDLE_TIMEOUT_S)
    assert server.address is not None
    framed = frame(oru("TRICKLE1"))
    try:
        with connect(server.address) as trickler:
            started = time.monotonic()
            with pytest.raises(OSError):  # EPIPE or ECONNRESET once the listener closed it
                for byte in framed[:-2]:
                    trickler.sendall(bytes([byte]))
                    time.sleep(0.02)
            lasted = time.monotonic() - started
    finally:
        server.stop()
    assert lasted < len(framed) * 0.02 / 2  # closed long before the message would end
    assert closed(site, "incomplete_message") == 1


def test_connection_completing_a_message_within_each_timeout_stays_open(site: Site) -> None:
    server = site.listen(idle_timeout_s=IDLE_TIMEOUT_S)
    assert server.address is not None
    try:
        with connect(server.address) as engine:
            for n in range(6):  # about 3 s in all, six idle timeouts
                time.sleep(IDLE_TIMEOUT_S * 0.6)
                engine.sendall(frame(oru(f"BUSY{n:04d}", study_uid=f"1.2.840.99.{n}")))
                assert msa(read_acks(engine, 1)[0]) == ("AA", f"BUSY{n:04d}")
    finally:
        server.stop()
    assert len(site.queued_cases()) == 6
    assert closed(site, "idle") == 0 and closed(site, "incomplete_message") == 0


def test_peer_that_reads_no_acknowledgement_is_closed_after_the_idle_timeout(
    site: Site,
) -> None:
    """A sender that never reads its ACKs would otherwise block the listener's writes, and
    hold its slot, for good."""
    server = site.listen(idle_timeout_s=IDLE_TIMEOUT_S)
    assert server.address is not None
    unusable = frame(b"x") * 1000  # each answered AE at once, nothing stored
    deaf = socket.socket()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    try:
        with deaf:
            deaf.connect(server.address)
            deaf.settimeout(0.2)
            deadline = time.monotonic() + 60
            while closed(site, "ack_not_read") == 0:  # its buffers fill with unread ACKs
                assert time.monotonic() < deadline, "never closed"
                with suppress(OSError):  # a send timeout, or reset once it is closed
                    deaf.sendall(unusable)
            wait_until(lambda: server.open_connections == 0)
    finally:
        server.stop()
    assert closed(site, "idle") == 0 and closed(site, "incomplete_message") == 0


def test_idle_timeout_comes_from_the_settings(tmp_path: Path) -> None:
    settings = site_settings(
        tmp_path, mllp_port=0, mllp_idle_timeout_s=42, followups=FollowUpMappings(hl7=MAPPING)
    )
    assert MllpEndpoint.from_settings(settings).idle_timeout_s == 42
    assert site_settings(tmp_path).mllp_idle_timeout_s == 300


@pytest.mark.parametrize("seconds", [0, -1, 86401])
def test_idle_timeout_is_bounded(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(ValidationError, match="mllp_idle_timeout_s"):
        site_settings(tmp_path, mllp_idle_timeout_s=seconds)


def test_idle_timeout_is_read_from_the_toml_file(tmp_path: Path) -> None:
    site_settings(tmp_path)  # writes the key file
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        "mllp_idle_timeout_s = 90\n"
    )
    assert load_settings(config, environ={}).mllp_idle_timeout_s == 90


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its 0600 key."""
    return self_signed_certificate(tmp_path, "mllp")


def test_tls_round_trip_verifies_the_certificate(
    site: Site, certificate: tuple[Path, Path]
) -> None:
    cert_file, key_file = certificate
    server = site.listen(tls_cert_file=cert_file, tls_key_file=key_file)
    assert server.address is not None
    context = ssl.create_default_context(cafile=str(cert_file))
    try:
        with context.wrap_socket(connect(server.address), server_hostname="127.0.0.1") as client:
            client.sendall(frame(oru("TLS00001")))
            (ack,) = read_acks(client, 1)
    finally:
        server.stop()
    assert msa(ack) == ("AA", "TLS00001")


def test_tls_key_others_can_read_is_refused(site: Site, certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    key_file.chmod(0o644)
    with pytest.raises(MllpListenerError, match="MLLP TLS key file .* accessible to other"):
        site.listen(tls_cert_file=cert_file, tls_key_file=key_file)


def test_taken_port_is_a_clear_error(site: Site, listener: tuple[str, int]) -> None:
    with pytest.raises(
        MllpListenerError, match=f"cannot listen for MLLP on 127.0.0.1:{listener[1]}"
    ):
        site.listen(port=listener[1])


# --- framing ----------------------------------------------------------------------------------


@given(
    bodies=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\x1c", b"")), max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
)
def test_frames_do_not_depend_on_how_the_stream_was_cut(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame(body) for body in bodies)
    deframer = MllpDeframer(max_message_bytes=25)
    frames: list[MllpFrame] = []
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in zip(points, points[1:], strict=False):
        frames += deframer.feed(stream[start:end])
    assert [(f.content, f.size) for f in frames] == [(b[:25], len(b)) for b in bodies]
    assert deframer.partial_bytes == 0


HL7_CHARACTERS = st.sampled_from(list("MSHOBXRPIDC|^~\\&\r\n 0123F.-+"))


@given(noise=st.text(HL7_CHARACTERS, max_size=60), at=st.integers(min_value=0, max_value=400))
def test_any_damage_to_a_message_is_answered_never_raised(noise: str, at: int) -> None:
    text = oru("DAMAGED1").decode()
    damaged = (text[:at] + noise + text[at:]).encode()
    verdict = assess(MllpFrame(damaged, len(damaged)), MAPPING)
    assert verdict.code in ("AA", "AE", "AR") and (verdict.code == "AA") == bool(verdict.records)


# --- settings and the assembled collector -----------------------------------------------------


def test_mllp_port_needs_the_hl7_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"configure \[collector.followups.hl7\]"):
        site_settings(tmp_path, mllp_port=2575)


def test_allowed_peer_that_is_no_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not an IP address or network"):
        site_settings(tmp_path, mllp_allowed_peers=("mirth.hospital.local",))


def test_readable_tls_key_refuses_the_collector_start(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert_file, key_file = certificate
    key_file.chmod(0o644)
    settings = site_settings(
        tmp_path,
        mllp_port=0,
        mllp_tls_cert_file=cert_file,
        mllp_tls_key_file=key_file,
        followups=FollowUpMappings(hl7=MAPPING),
    )
    with pytest.raises(
        CollectorConfigError,
        match=r"^mllp: mllp_tls_key_file \(POSTMARKET_MLLP_TLS_KEY_FILE\): MLLP TLS key file .* "
        "other users",
    ):
        Collector(settings, connect=UnreachableBroker)


class UnreachableBroker:
    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        raise DeliveryError("broker unreachable")

    def close(self) -> None:
        pass


EXAMPLE = Path(__file__).parents[2] / "collectors" / "collector.example.toml"


def test_the_example_mllp_settings_load_once_uncommented(tmp_path: Path) -> None:
    lines = [
        line[2:] if line.startswith("# mllp_") else line
        for line in EXAMPLE.read_text().splitlines()
    ]
    config = tmp_path / "collector.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = load_settings(config, environ={})
    assert settings.mllp_port == 2575
    assert settings.mllp_allowed_peers == ("10.20.0.21/32", "10.20.1.0/24")
    assert settings.mllp_tls_key_file == tmp_path / "tls" / "mllp.key"
    assert settings.mllp_max_connections == 16
    assert settings.mllp_idle_timeout_s == 300


def test_collector_runs_the_listener_from_its_settings(tmp_path: Path) -> None:
    settings = site_settings(
        tmp_path, mllp_port=0, followups=FollowUpMappings(hl7=MAPPING), kafka_bootstrap="x:1"
    )
    collector = Collector(settings, connect=UnreachableBroker)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop,))
    runner.start()
    try:
        assert collector.mllp is not None
        deadline = time.monotonic() + 30
        while collector.mllp.address is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.mllp.address is not None
        with connect(collector.mllp.address) as client:
            client.sendall(frame(oru("RUN00001")))
            (ack,) = read_acks(client, 1)
        assert msa(ack) == ("AA", "RUN00001")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.depth() == 1
