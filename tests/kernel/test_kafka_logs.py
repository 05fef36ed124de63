"""kafka-python's read of a socket it closed itself logs no traceback; real read errors do.

Each record is the one kafka-python's own transport writes: a real ``KafkaTCPTransport`` on
a real socket pair reads as its network thread does once the wait for data returns.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaTCPTransport

import postmarket  # noqa: F401  (importing the kernel installs the filter, as in every process)
from postmarket.kafka_logs import TRANSPORT_LOGGER, read_after_own_close


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info]


@pytest.fixture
def kept() -> Iterator[Kept]:
    handler, logger = Kept(), logging.getLogger(TRANSPORT_LOGGER)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def transport() -> Iterator[KafkaTCPTransport]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield KafkaTCPTransport(NetworkSelector(), ours)
    ours.close()
    theirs.close()


def test_a_read_after_the_transport_closed_logs_no_traceback(
    kept: Kept, transport: KafkaTCPTransport
) -> None:
    transport.close()  # another thread closes the client while its network thread waits
    _data, error = transport._sock_recv()  # the waiting read resumes on the dropped socket
    assert error is not None  # kafka-python still sees the failure and stops reading
    assert kept.tracebacks() == []


def test_a_read_error_on_an_open_transport_keeps_its_traceback(
    kept: Kept, transport: KafkaTCPTransport
) -> None:
    transport._sock.close()  # the connection breaks under a transport nobody closed
    _data, error = transport._sock_recv()
    assert error is not None
    [record] = kept.tracebacks()
    assert record.levelno == logging.ERROR
    assert "Error receiving network data" in record.getMessage()
    assert not read_after_own_close(record)


def test_the_filter_recognises_the_very_record_kafka_python_writes(
    transport: KafkaTCPTransport,
) -> None:
    """Without the filter, kafka-python writes the record :func:`read_after_own_close` names
    (so the test above would fail if kafka-python stopped writing it or the filter broke)."""
    logger, handler = logging.getLogger(TRANSPORT_LOGGER), Kept()
    filters, logger.filters = logger.filters, []
    logger.addHandler(handler)
    try:
        transport.close()
        transport._sock_recv()
    finally:
        logger.filters = filters
        logger.removeHandler(handler)
    [record] = handler.tracebacks()
    assert isinstance(record.exc_info and record.exc_info[1], AttributeError)
    assert read_after_own_close(record)
