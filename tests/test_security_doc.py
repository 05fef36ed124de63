"""The threat model (docs/security.md) names only tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THREAT_MODEL = REPO / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
REFERENCES = sorted(set(REFERENCE.findall(THREAT_MODEL.read_text(encoding="utf-8"))))


def test_the_threat_model_cites_tests() -> None:
    assert len(REFERENCES) >= 30


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_each_cited_test_exists(path: str, name: str) -> None:
    source = REPO / path
    assert source.is_file(), path
    defined = re.search(rf"^(?:async )?def {name}\(", source.read_text(encoding="utf-8"), re.M)
    assert defined, f"{path} has no test {name}"
