"""Before a command talks to Kafka or Grafana: is the server there, does it let us in?

Without this, a command with no broker behind it waits for kafka-python's 30 to 60 s
timeouts and then ends in a traceback. A preflight costs one TCP connect and one metadata
round trip, each bounded by ``--connect-timeout``; a failure becomes a :class:`ServiceProblem`:
one or two lines naming the address, what failed and what to do, with an exit code per
kind of failure (:class:`ServiceFailure`), so scripts can tell "start the broker" from
"fix the password".
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Annotated

import typer

from postmarket.kafka_security import KafkaSecurity, KafkaSecurityError
from postmarket.secrets import SecretFileError
from postmarket.topic_admin import describe_error as describe_error

CONNECT_TIMEOUT_S = 5.0
"""Default of ``--connect-timeout``: a broker or Grafana on a LAN answers in well under it."""

START_KAFKA = (
    "start it with `postmarket stack up`, or give --bootstrap / POSTMARKET_KAFKA_BOOTSTRAP"
)
CHECK_KAFKA_LOGIN = (
    "check POSTMARKET_KAFKA_SECURITY_PROTOCOL, POSTMARKET_KAFKA_USERNAME, its password file "
    "(POSTMARKET_KAFKA_PASSWORD_FILE) and POSTMARKET_KAFKA_CA_FILE"
)


class ServiceFailure(IntEnum):
    """Exit codes of a command whose Kafka broker or Grafana failed it (Click uses 2)."""

    BAD_SETTING = 1
    """A setting or a secret file is unusable (also the store commands' 'refused')."""
    UNREACHABLE = 5
    """Nothing answered at the address, or not as Kafka / Grafana does."""
    AUTHENTICATION_REFUSED = 6
    """The server refused our credentials (SASL, TLS, HTTP 401/403)."""
    TOPIC_MISSING = 7
    """The broker answered but has not (or does not show us) the topic the command needs."""
    SERVER_ERROR = 8
    """The server answered with an error of its own (HTTP 5xx)."""


class ServiceProblem(Exception):
    """Why a command cannot use its server: ``failure`` is the exit code, ``str()`` the lines
    to print (never a secret)."""

    def __init__(self, failure: ServiceFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]",
        show_default=False,
    ),
]
ConnectTimeoutOption = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        min=0.1,
        metavar="SECONDS",
        help="how long to wait for the server to answer before giving up",
    ),
]


def exit_for(problem: ServiceProblem) -> typer.Exit:
    """Print ``problem`` on stderr; the :class:`typer.Exit` to raise with its exit code."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(int(problem.failure))


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` as (host, port) pairs; ServiceProblem if one is not.

    >>> bootstrap_addresses("127.0.0.1:9092, kafka-2:9093,[::1]:9094")
    [('127.0.0.1', 9092), ('kafka-2', 9093), ('::1', 9094)]
    """
    addresses = []
    for entry in (part.strip() for part in bootstrap.split(",")):
        host, colon, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ServiceProblem(
                ServiceFailure.BAD_SETTING,
                f"Kafka bootstrap {bootstrap!r}: {entry!r} is not host:port",
            )
        addresses.append((host, int(port)))
    return addresses


def tcp_problem(host: str, port: int, timeout_s: float) -> str | None:
    """Why nothing accepts a TCP connection at host:port within ``timeout_s``; None if it does."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"no such host {host}"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as error:
        return error.strerror or describe_error(error)


def check_kafka(
    bootstrap: str,
    security: KafkaSecurity,
    timeout_s: float = CONNECT_TIMEOUT_S,
    topics: Iterable[str] = (),
) -> None:
    """Raise :class:`ServiceProblem` unless a broker at ``bootstrap`` accepts ``security``'s
    credentials within ``timeout_s`` and shows every one of ``topics``; sends nothing."""
    where = f"Kafka at {bootstrap}"
    try:
        client_kwargs = security.kafka_python_kwargs()  # reads (and checks) the password file
    except (KafkaSecurityError, SecretFileError) as error:  # e.g. a 0644 password file
        raise ServiceProblem(ServiceFailure.BAD_SETTING, f"{where}: {error}") from None
    reasons = [tcp_problem(host, port, timeout_s) for host, port in bootstrap_addresses(bootstrap)]
    if all(reasons):
        raise ServiceProblem(
            ServiceFailure.UNREACHABLE,
            f"{where} is not reachable ({'; '.join(filter(None, reasons))}); {START_KAFKA}",
        )
    visible = _broker_topics(where, bootstrap, client_kwargs, timeout_s, security)
    missing = sorted(set(topics) - visible)
    if missing:
        raise ServiceProblem(
            ServiceFailure.TOPIC_MISSING,
            f"{where} has no topic {', '.join(missing)} (or does not show it to this client); "
            "create the pipeline's topics with `postmarket topics create`",
        )


def _broker_topics(
    where: str,
    bootstrap: str,
    client_kwargs: dict[str, object],
    timeout_s: float,
    security: KafkaSecurity,
) -> set[str]:
    """The topic names the broker lists to us: one bootstrap and one metadata round trip."""
    try:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError
    except ImportError:  # the bare kernel install has no Kafka client
        raise ServiceProblem(
            ServiceFailure.BAD_SETTING,
            "kafka-python is not installed; install postmarket-surveillance[collector] or [worker]",
        ) from None
    timeout_ms = int(timeout_s * 1000)
    with _kafka_client_errors() as refusals:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="postmarket-preflight",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                **client_kwargs,
            )
            try:
                return {str(name) for name in admin.list_topics()}
            finally:
                admin.close()
        except KafkaError as error:
            failure = error
    refusal = _refusal([*refusals, failure], security)
    if refusal is not None:
        raise ServiceProblem(
            ServiceFailure.AUTHENTICATION_REFUSED,
            f"{where} refused this client as {security.protocol}"
            f"{f' user {security.username}' if security.username else ''}: {refusal}; "
            f"{CHECK_KAFKA_LOGIN}",
        )
    raise ServiceProblem(
        ServiceFailure.UNREACHABLE,
        f"{where} accepted a connection but answered no Kafka request within {timeout_s:g} s "
        f"({describe_error(failure)}); is it a Kafka listener for {security.protocol}? "
        f"{CHECK_KAFKA_LOGIN}",
    )


@contextmanager
def _kafka_client_errors() -> Iterator[list[BaseException]]:
    """Collect the exceptions kafka-python logs (it logs an authentication failure and
    retries until its timeout, which then hides the reason), and keep them off the console."""
    logger = logging.getLogger("kafka")
    seen: list[BaseException] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            seen.extend(arg for arg in args if isinstance(arg, BaseException))

    handler = Collect(logging.WARNING)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def _refusal(errors: Iterable[BaseException], security: KafkaSecurity) -> str | None:
    """What in the logged errors means "you are not let in": SASL, ACL or TLS handshake."""
    from kafka.errors import AuthorizationError, KafkaConnectionError, SaslAuthenticationFailedError

    logged = list(errors)
    for error in logged:
        if isinstance(error, SaslAuthenticationFailedError | AuthorizationError):
            return describe_error(error)
        _, handshake, reason = str(error).partition("Handshake failed")
        if security.uses_tls and handshake:
            return f"TLS handshake failed{reason.rstrip()}"
    # A broker refusing SCRAM credentials closes the connection after the TLS handshake
    # instead of answering; kafka-python then only sees a lost connection.
    if security.uses_sasl and any(isinstance(error, KafkaConnectionError) for error in logged):
        return "it closed the connection at the SASL login (a wrong username or password?)"
    return None
