"""kafka-python's log records, kept honest: no traceback for a socket it closed itself.

kafka-python 3's network thread can be waiting to read a connection while another thread
closes the client: the transport drops its socket, the waiting read then calls ``recv`` on
``None``, and the client logs that ``AttributeError`` at ERROR with a traceback, although
nothing was lost (the transport was already closed on purpose: a consumer leaving its group,
a producer flushed and closed). A person running a command must never see a traceback, so
that one record is dropped. A read error on a transport still open is a real connection
failure and is kept as kafka-python logs it.
"""

from __future__ import annotations

import logging

TRANSPORT_LOGGER = "kafka.net.transport"
_READ_ERROR = "Error receiving network data"


def read_after_own_close(record: logging.LogRecord) -> bool:
    """Whether ``record`` is kafka-python's failed read of a transport closed on purpose."""
    if not record.exc_info or not isinstance(record.exc_info[1], AttributeError):
        return False
    if not isinstance(record.msg, str) or _READ_ERROR not in record.msg:
        return False
    transport = record.args[0] if isinstance(record.args, tuple) and record.args else None
    is_closing = getattr(transport, "is_closing", None)
    return callable(is_closing) and is_closing() is True


class _DropReadAfterOwnClose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not read_after_own_close(record)


def quiet_closed_transports() -> None:
    """Drop :func:`read_after_own_close` records at kafka-python's transport logger (once)."""
    logger = logging.getLogger(TRANSPORT_LOGGER)
    if not any(isinstance(f, _DropReadAfterOwnClose) for f in logger.filters):
        logger.addFilter(_DropReadAfterOwnClose())
