"""Publish the dashboards to an existing Grafana over its HTTP API (``grafana-client``).

The API token is read from a file so it never appears in a process list or shell history,
and it is never printed: errors name the file, not its content. The file must be private to
its owner, like every secret file of the project. One authenticated request
(:func:`check_grafana`) comes first, so a Grafana that is down or refuses the token is
reported in seconds, with the exit code of its :class:`ServiceFailure`.

Without ``--url``, Grafana is where the ``grafana_url`` setting says: the
``POSTMARKET_GRAFANA_URL`` variable, else ``grafana_url`` in the TOML file the other settings
come from (``POSTMARKET_CONFIG``, default ``./postmarket.toml``), else Grafana's own default
on loopback, ``http://127.0.0.1:3000``.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dashboards.build import DASHBOARDS, to_dict
from postmarket.config import ENV_PREFIX, config_file
from postmarket.preflight import CONNECT_TIMEOUT_S, ServiceFailure, ServiceProblem
from postmarket.secrets import SecretFileError, read_secret_file

FOLDER_UID = "postmarket"
FOLDER_TITLE = "Post-market surveillance"
COMMIT_MESSAGE = "postmarket dashboards publish"
PROBE_PATH = "/api/search?limit=1"
"""An authenticated read any service-account token may do: proves Grafana is there and
accepts the token, and costs Grafana almost nothing."""
READ_TIMEOUT_S = 30.0
"""How long one upload may take once connected (a dashboard is a few hundred kB at most)."""
GRAFANA_URL_ENV = f"{ENV_PREFIX}GRAFANA_URL"
URL_OPTION = "--url"
URL_SETTING = f"grafana_url ({GRAFANA_URL_ENV} or the TOML file)"


class PublishError(ServiceProblem):
    """Publishing cannot start or Grafana refused it; the message never holds the token."""

    def __init__(self, message: str, failure: ServiceFailure = ServiceFailure.BAD_SETTING) -> None:
        super().__init__(failure, message)


@dataclass(frozen=True)
class GrafanaTarget:
    """Where to publish; the token is kept out of ``repr`` so it cannot reach a log."""

    url: str
    token: str = field(repr=False)
    connect_timeout_s: float = CONNECT_TIMEOUT_S


def grafana_url(option: str | None) -> str:
    """The checked Grafana base URL: ``--url`` if given, else the ``grafana_url`` setting."""
    if option is not None:
        return check_url(option)
    from postmarket.config import Settings

    try:
        configured = Settings().grafana_url
    except ValueError as error:  # a TOML syntax error or a grafana_url that is no string
        raise PublishError(
            f"cannot read grafana_url from {GRAFANA_URL_ENV} or {config_file()} "
            f"({type(error).__name__}); fix it or give --url"
        ) from None
    return check_url(configured, URL_SETTING)


def check_url(url: str, source: str = URL_OPTION) -> str:
    """The Grafana base URL without a trailing slash, if it is http(s) with a host;
    errors name ``source``, the option or setting it came from.

    >>> check_url("https://grafana.example.org/")
    'https://grafana.example.org'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublishError(f"{source} must be an http:// or https:// URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise PublishError(
            f"{source} must not carry credentials; put the API token in --token-file"
        )
    return url.rstrip("/")


def read_token(path: Path) -> str:
    """The API token in ``path`` (surrounding whitespace removed), a file only its owner
    may read (mode 0600 or 0400)."""
    try:
        token = read_secret_file(path, "Grafana token").decode("utf-8")
    except SecretFileError as error:
        raise PublishError(str(error)) from None
    except UnicodeDecodeError:
        raise PublishError(f"the token file {path} is not UTF-8 text") from None
    if any(ch.isspace() for ch in token):
        raise PublishError(f"the token file {path} must hold one API token on one line")
    return token


def http_failure(url: str, status: int) -> PublishError:
    """What Grafana's HTTP ``status`` means for the operator, and the exit code it gets.

    >>> refused = http_failure("http://g:3000", 401)
    >>> refused.failure.name
    'AUTHENTICATION_REFUSED'
    >>> str(refused).split(": ")[0]
    'Grafana at http://g:3000 answered HTTP 401 Unauthorized'
    >>> http_failure("http://g:3000", 503).failure.name
    'SERVER_ERROR'
    """
    try:
        answered = f"Grafana at {url} answered HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        answered = f"Grafana at {url} answered HTTP {status}"
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return PublishError(
            f"{answered}: it refused the token from --token-file; give a service-account "
            "token with the Editor role",
            ServiceFailure.AUTHENTICATION_REFUSED,
        )
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return PublishError(
            f"{answered}, a fault of its own; see Grafana's log, then publish again",
            ServiceFailure.SERVER_ERROR,
        )
    return PublishError(f"{answered}; is --url Grafana's base URL?", ServiceFailure.UNREACHABLE)


def unreachable(url: str, reason: object) -> PublishError:
    """Nothing (or nothing we trust, for TLS) answered at ``url``."""
    if isinstance(reason, ssl.SSLError):
        return PublishError(
            f"Grafana at {url}: TLS failed ({reason}); check --url and Grafana's certificate",
            ServiceFailure.AUTHENTICATION_REFUSED,
        )
    return PublishError(
        f"Grafana at {url} is not reachable ({reason}); check --url and that Grafana is running",
        ServiceFailure.UNREACHABLE,
    )


def check_grafana(target: GrafanaTarget) -> None:
    """Raise :class:`PublishError` unless Grafana answers one authenticated read within
    ``target.connect_timeout_s``."""
    probe = urllib.request.Request(  # noqa: S310 (check_url allows http and https only)
        target.url + PROBE_PATH, headers={"Authorization": f"Bearer {target.token}"}
    )
    timeout_s = target.connect_timeout_s
    try:
        with urllib.request.urlopen(probe, timeout=timeout_s):  # noqa: S310
            return
    except urllib.error.HTTPError as answer:
        raise http_failure(target.url, answer.code) from None
    except urllib.error.URLError as error:
        raise unreachable(target.url, _reason(error.reason, timeout_s)) from None
    except OSError as error:  # a timeout or reset while reading the answer
        raise unreachable(target.url, _reason(error, timeout_s)) from None


def _reason(error: object, timeout_s: float) -> object:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return error


def payloads(folder_uid: str = FOLDER_UID) -> list[dict[str, Any]]:
    """What ``POST /api/dashboards/db`` receives for each dashboard, in build order."""
    return [
        {
            "dashboard": to_dict(build()),
            "folderUid": folder_uid,
            "overwrite": True,
            "message": COMMIT_MESSAGE,
        }
        for build in DASHBOARDS.values()
    ]


def connect_grafana(target: GrafanaTarget) -> Any:
    """A ``grafana_client.GrafanaApi`` authenticated with the target's bearer token."""
    from grafana_client.api import GrafanaApi

    # A plain string credential is sent as "Authorization: Bearer <token>".
    timeout = (target.connect_timeout_s, READ_TIMEOUT_S)
    return GrafanaApi.from_url(target.url, credential=target.token, timeout=timeout)


def publish(
    target: GrafanaTarget,
    connect: Callable[[GrafanaTarget], Any] | None = None,
    folder_title: str = FOLDER_TITLE,
) -> list[str]:
    """Create the folder if needed and upload every dashboard; return the dashboard URLs."""
    from grafana_client.client import GrafanaClientError, GrafanaException

    api = (connect or connect_grafana)(target)
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as missing:
            if missing.status_code != 404:
                raise
            api.folder.create_folder(folder_title, uid=FOLDER_UID)
        published = []
        for payload in payloads(FOLDER_UID):
            answer = api.dashboard.update_dashboard(payload)
            path = answer.get("url") if isinstance(answer, dict) else None
            published.append(f"{target.url}{path or '/d/' + payload['dashboard']['uid']}")
    except GrafanaException as error:
        raise http_failure(target.url, int(error.status_code)) from None
    except OSError as error:  # grafana-client's (niquests') connection errors are OSErrors
        raise unreachable(target.url, _reason(error, target.connect_timeout_s)) from None
    return published
