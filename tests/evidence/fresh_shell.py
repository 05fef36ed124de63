"""The environment of a user's fresh shell, for tests that run the installed ``postmarket``."""

from __future__ import annotations

import os


def fresh_shell_environment(**settings: str) -> dict[str, str]:
    """The caller's environment without any POSTMARKET_* setting, plus ``settings``: the
    command finds its defaults as a user's new shell would, not the test runner's store."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("POSTMARKET_")}
    return {**kept, **settings}
