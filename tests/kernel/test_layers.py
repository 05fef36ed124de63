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


@pytest.mark.parametrize("package", ["streams", "detectors", "collectors", "postmarket/evidence"])
def test_the_production_worker_needs_nothing_of_the_local_stack(package: str) -> None:
    """The worker, the collector and the evidence side check their topics and announce their
    metrics through the kernel (postmarket.topic_admin, postmarket.scrape_targets), never
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


EVIDENCE = ROOT / "postmarket" / "evidence"


def evidence_modules() -> dict[str, Path]:
    """Every evidence module by dotted name (the Alembic environment and revisions aside)."""
    return {
        f"postmarket.evidence.{path.stem}": path
        for path in sorted(EVIDENCE.glob("*.py"))
        if path.name != "__init__.py"
    }


def evidence_imports(path: Path) -> set[str]:
    """The evidence modules ``path`` imports, type-only imports included."""
    modules = evidence_modules()
    return {module for module in imported_modules(path) if module in modules}


PRODUCT = ("postmarket", "streams", "collectors", "detectors", "dashboards", "simulator")
MODULE_LINES = 600
"""One concept per file: a product module longer than this holds more than one."""
GENERATED: dict[str, str] = {
    "collectors/confidentiality_profile.py": "DICOM PS3.15 Table E.1-1 as data, one entry per"
    " attribute, written by collectors/tooling/generate_confidentiality_profile.py",
}
"""Generated modules, by path, with why their length is no concept's: no one edits them."""
NOT_SPLIT_YET: frozenset[str] = frozenset()
"""The hand-written modules over the bound when this rule was extended to the whole product
(issue 18, 2026-12-06): an entry leaves when its module is split (the length test fails
until it does), and none is added."""


def product_modules() -> dict[str, Path]:
    """Every product module by path from the repository root, generated ones aside."""
    return {
        path.relative_to(ROOT).as_posix(): path
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in GENERATED
    }


@pytest.mark.parametrize("path", product_modules().values(), ids=product_modules().keys())
def test_a_product_module_holds_one_concept(path: Path) -> None:
    name = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text().splitlines())
    if name in NOT_SPLIT_YET:
        assert lines > MODULE_LINES, f"{name} is split: remove it from NOT_SPLIT_YET"
    else:
        assert lines <= MODULE_LINES, f"{name} has {lines} lines: split it by concept"


def test_a_module_not_split_yet_still_exists() -> None:
    """A module renamed or removed leaves the list rather than leaving a stale entry."""
    assert sorted(NOT_SPLIT_YET - product_modules().keys()) == []


@pytest.mark.parametrize("name", GENERATED)
def test_a_module_exempt_as_generated_says_so_in_its_header(name: str) -> None:
    """The exemption holds only while the file still declares itself generated."""
    header = (ROOT / name).read_text()[:1000]
    assert "GENERATED by" in header and "do not edit" in header


REPLAY = ROOT / "streams" / "replay"
REPLAY_LAYERS = ("mapping", "rows", "readers", "sinks", "records", "run", "command")
"""The replay's modules, bottom first: each imports only those before it (the command last)."""


def test_a_replay_module_imports_only_those_below_it() -> None:
    modules = sorted(path.stem for path in REPLAY.glob("*.py") if path.name != "__init__.py")
    assert modules == sorted(REPLAY_LAYERS), "place every replay module in REPLAY_LAYERS"
    found = []
    for level, stem in enumerate(REPLAY_LAYERS):
        for module in imported_modules(REPLAY / f"{stem}.py"):
            parts = module.split(".")
            if parts[:2] != ["streams", "replay"]:
                continue
            imported = parts[2] if len(parts) > 2 else "the package"
            if imported not in REPLAY_LAYERS[:level]:
                found.append(f"{stem} imports {module}")
    assert found == []


def is_command_line(module: str) -> bool:
    """Typer, or a CLI module of ours (``cli``, ``*_cli``, ``cli_*``)."""
    parts = module.split(".")
    return parts[0] == "typer" or any(
        part == "cli" or part.endswith("_cli") or part.startswith("cli_") for part in parts
    )


def test_the_store_imports_no_command_line() -> None:
    """The store and its concept modules are a library under the CLI, never above it."""
    store = [
        path
        for path in evidence_modules().values()
        if path.stem in ("store", "views")
        or path.stem.startswith("store_")
        or path.stem.endswith("_store")
    ]
    found = [
        f"{path.name} imports {module}"
        for path in store
        for module in imported_modules(path)
        if is_command_line(module)
    ]
    assert found == []


def test_no_evidence_module_imports_one_that_imports_it_back() -> None:
    """No circle among the evidence modules, not even through a type-only import."""
    graph = {name: evidence_imports(path) for name, path in evidence_modules().items()}
    circles: list[str] = []

    def visit(module: str, trail: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in trail:
                circles.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in done:
                visit(imported, [*trail, imported])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert circles == []
