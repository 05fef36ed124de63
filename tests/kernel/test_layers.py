"""What may import what, read from the code's own imports (issue 18 states the whole rule;
these are the parts the code already keeps, so they cannot rot)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> Iterator[str]:
    """Every module a file imports, at its top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def offending(package: str, forbidden: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in imported_modules(path)
        if module == forbidden or module.startswith(forbidden + ".")
    ]


@pytest.mark.parametrize("package", ["streams", "detectors"])
def test_the_production_worker_needs_nothing_of_the_local_stack(package: str) -> None:
    """The worker checks its topics through the kernel (postmarket.topic_admin), never
    through the launcher that starts a broker from Maven jars."""
    assert offending(package, "postmarket.stack") == []


def test_topic_administration_imports_only_the_kernel() -> None:
    imported = set(imported_modules(ROOT / "postmarket" / "topic_admin.py"))
    ours = {m for m in imported if m.split(".")[0] in {"postmarket", "streams", "collectors"}}
    assert ours <= {
        "postmarket.kafka_security",
        "postmarket.kafka_security.KafkaSecurity",
        "postmarket.topics",
        "postmarket.topics.TopicSpec",
    }


def test_no_agent_imports_another() -> None:
    agents = ROOT / "streams" / "agents"
    found = [
        f"{path.name} imports {module}"
        for path in sorted(agents.glob("*.py"))
        if path.name != "__init__.py"
        for module in imported_modules(path)
        if module.startswith("streams.agents")
    ]
    assert found == []
