"""Fixtures of the deployment tests: the parsed compose file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_files import COMPOSE_FILE


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document
