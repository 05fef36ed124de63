"""Publish the dashboards to an existing Grafana over its HTTP API (``grafana-client``).

The API token is read from a file so it never appears in a process list or shell history,
and it is never printed: errors name the file, not its content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dashboards.build import DASHBOARDS, to_dict

FOLDER_UID = "postmarket"
FOLDER_TITLE = "Post-market surveillance"
COMMIT_MESSAGE = "postmarket dashboards publish"


class PublishError(RuntimeError):
    """Publishing cannot start or Grafana refused it; the message never holds the token."""


@dataclass(frozen=True)
class GrafanaTarget:
    """Where to publish; the token is kept out of ``repr`` so it cannot reach a log."""

    url: str
    token: str = field(repr=False)


def check_url(url: str) -> str:
    """The Grafana base URL without a trailing slash, if it is http(s) with a host.

    >>> check_url("https://grafana.example.org/")
    'https://grafana.example.org'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublishError(f"--url must be an http:// or https:// URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise PublishError("--url must not carry credentials; put the API token in --token-file")
    return url.rstrip("/")


def read_token(path: Path) -> str:
    """The API token in ``path`` (surrounding whitespace removed)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise PublishError(f"cannot read the token file {path}: {error.strerror}") from None
    if not token or any(ch.isspace() for ch in token):
        raise PublishError(f"the token file {path} must hold one API token on one line")
    return token


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
    return GrafanaApi.from_url(target.url, credential=target.token)


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
        raise PublishError(
            f"Grafana at {target.url} refused: HTTP {error.status_code} {error.message}"
        ) from None
    return published
