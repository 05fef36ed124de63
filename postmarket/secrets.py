"""Secrets come only from files (or the file an environment variable names).

A secret file that group or others can access is refused: on a shared collector host
that is how keys leak. Errors name the file and the problem, never the content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretFileError(ValueError):
    """A secret file is missing, unreadable, empty or accessible to other users."""


def read_secret_file(path: Path, what: str) -> bytes:
    """The stripped bytes of ``path``, which must be private to its owner (mode 0600/0400).

    ``what`` names the secret in errors ("site key", "Kafka password", ...).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretFileError(f"{what} file {path} does not exist") from None
    except OSError as error:
        raise SecretFileError(f"{what} file {path}: {error.strerror}") from None
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


def secret_from_environment(variable: str, what: str) -> bytes:
    """Read the secret file named by environment ``variable``."""
    location = os.environ.get(variable)
    if not location:
        raise SecretFileError(f"{variable} is not set: name the {what} file there")
    return read_secret_file(Path(location), what)


def write_secret_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 before writing, so the secret is never exposed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.chmod(path, 0o600)
