"""Secrets come only from files (or the file an environment variable names).

A secret file that group or others can access is refused: on a shared collector host
that is how keys leak. Errors name the file and the problem, never the content; and since
a variable meant for a path easily receives the secret itself (``VAR="$(cat site.key)"``),
an error shows the configured value only when it plausibly is a path (:func:`looks_like_path`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

NOT_A_PATH = "the value is not a file path (it looks like the secret itself)"
MAX_SHOWN_PATH_CHARS = 256
_HEX_KEY = re.compile(r"[0-9a-fA-F]{32,}")
_ENCODED_KEY = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_ENCODED_PART = re.compile(r"[A-Za-z0-9+=_-]+")
MIN_RANDOM_PART_CHARS = 16


class SecretFileError(ValueError):
    """A secret file is missing, unreadable, empty or accessible to other users."""


def looks_like_path(value: str) -> bool:
    """Whether ``value`` may be shown in a message: short, one printable line, not key material.

    >>> looks_like_path("/etc/postmarket/site.key")
    True
    >>> looks_like_path("-----BEGIN PRIVATE KEY-----")
    False
    >>> looks_like_path("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    False
    """
    if not 0 < len(value) <= MAX_SHOWN_PATH_CHARS or not value.isprintable() or "-----" in value:
        return False
    return not _looks_like_key_material(value)


def _looks_like_key_material(value: str) -> bool:
    """Hex or base64, whole or as one folder of a path (a config file's folder is prefixed
    to a relative value): how keys and generated passwords are written."""
    if _HEX_KEY.fullmatch(value):
        return True
    if _ENCODED_KEY.fullmatch(value) and "." not in value:
        if "/" not in value or "+" in value or value.endswith("="):
            return True
        if "" in value.removeprefix("/").split("/"):  # "//": base64, not a folder
            return True
    return any(_random_looking(part) for part in value.split("/"))


def _random_looking(part: str) -> bool:
    """A path part that is key material: hex, or 16+ base64 characters mixing upper and
    lower case and digits (folder and file names are words)."""
    if _HEX_KEY.fullmatch(part):
        return True
    return (
        len(part) >= MIN_RANDOM_PART_CHARS
        and _ENCODED_PART.fullmatch(part) is not None
        and any(c.isupper() for c in part)
        and any(c.islower() for c in part)
        and any(c.isdigit() for c in part)
    )


def read_secret_file(path: Path, what: str) -> bytes:
    """The stripped bytes of ``path``, which must be private to its owner (mode 0600/0400).

    ``what`` names the secret in errors ("site key", "Kafka password", ...).
    """
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError) as error:  # ValueError: an embedded NUL byte
        # Nothing was found there, so the value may be the secret itself: show it only if
        # it plausibly is a path. Past this point it names a real file and may be shown.
        raise SecretFileError(_not_found(path, what, error)) from None
    if not stat.S_ISREG(mode):
        raise SecretFileError(f"{what} file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"{what} file {path} is accessible to other users "
            f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    try:
        content = path.read_bytes().strip()
    except OSError as error:
        raise SecretFileError(f"{what} file {path}: {error.strerror}") from None
    if not content:
        raise SecretFileError(f"{what} file {path} is empty")
    return content


def _not_found(path: Path, what: str, error: OSError | ValueError) -> str:
    if not looks_like_path(str(path)):
        return f"{what} file: {NOT_A_PATH}; put it in a 0600 file and name that file"
    if isinstance(error, FileNotFoundError):
        return f"{what} file {path} does not exist"
    reason = error.strerror if isinstance(error, OSError) else None
    return f"{what} file {path}: {reason or 'not a usable path'}"


def secret_from_environment(variable: str, what: str) -> bytes:
    """Read the secret file named by environment ``variable``."""
    location = os.environ.get(variable)
    if not location:
        raise SecretFileError(f"{variable} is not set: name the {what} file there")
    try:
        return read_secret_file(Path(location), what)
    except SecretFileError as error:
        raise SecretFileError(f"{variable}: {error}") from None


def write_secret_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 before writing, so the secret is never exposed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.chmod(path, 0o600)
