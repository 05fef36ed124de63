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
    return forbidden_imports(sorted((ROOT / package).rglob("*.py")), forbidden)


def forbidden_imports(paths: list[Path], forbidden: str) -> list[str]:
    """``path imports module`` for each import of ``forbidden`` or of a module inside it."""
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} imports {module}"
        for path in paths
        for module in imported_modules(path)
        if module == forbidden or module.startswith(forbidden + ".")
    ]


SIDES = ("collectors", "streams", "detectors", "evidence", "dashboards", "simulator")
"""What the kernel serves: the hospital side, the worker, the statistics, the evidence side
(the store, its commands and the reports), the dashboards and the fleet simulator."""
COMMAND_ENTRY = ROOT / "postmarket" / "__main__.py"
"""``python -m postmarket``: the one file in the kernel's folder that runs the launcher (Python
finds ``-m NAME`` by package name, and the command keeps its name); nothing imports it."""


def kernel_files() -> list[Path]:
    """The kernel's modules: ``postmarket/`` but the command entry."""
    return [path for path in sorted((ROOT / "postmarket").rglob("*.py")) if path != COMMAND_ENTRY]


@pytest.mark.parametrize("upper", [*SIDES, "launcher"])
def test_the_kernel_imports_nothing_above_it(upper: str) -> None:
    """Contracts, topics, configuration, secrets, security, authenticity, versions and metric
    definitions are the bottom: no side, and not the launcher that composes the sides."""
    assert len(kernel_files()) > 10, "the kernel's modules are found"
    assert forbidden_imports(kernel_files(), upper) == []


def test_python_m_postmarket_only_runs_the_launchers_command() -> None:
    """The kernel's folder holds the command's entry and nothing else of the launcher's."""
    ours = {
        module
        for module in imported_modules(COMMAND_ENTRY)
        if module.split(".")[0] in {"postmarket", "launcher", *SIDES}
    }
    assert ours == {"launcher.cli", "launcher.cli.main"}
    every_module = [path for package in PRODUCT for path in (ROOT / package).rglob("*.py")]
    assert forbidden_imports(every_module, "postmarket.__main__") == []


@pytest.mark.parametrize("package", SIDES)
def test_no_side_imports_the_launcher(package: str) -> None:
    """The sides never import what composes them: the worker, the collector and the evidence
    side check their topics and announce their metrics through the kernel
    (postmarket.topic_admin, postmarket.scrape_targets), never through the local stack that
    starts a broker from Maven jars (launcher.stack), the command or the demo."""
    assert offending(package, "launcher") == []


@pytest.mark.parametrize("upper", ["streams", "collectors", "dashboards", "simulator", "launcher"])
def test_the_evidence_side_imports_only_the_kernel_and_the_statistics(upper: str) -> None:
    """The store, its commands and the reports stand on the kernel and ``detectors`` alone."""
    assert offending("evidence", upper) == []


@pytest.mark.parametrize("lower", ["postmarket", "collectors", "streams", "detectors", "simulator"])
def test_only_the_dashboards_and_the_launcher_import_the_evidence_side(lower: str) -> None:
    """The kernel, both pipeline sides, the statistics and the simulator never reach into the
    evidence store; the dashboards read its metric names, the launcher composes it."""
    paths = [path for path in sorted((ROOT / lower).rglob("*.py")) if path != COMMAND_ENTRY]
    assert forbidden_imports(paths, "evidence") == []


def test_the_local_stack_imports_only_the_kernel() -> None:
    """``postmarket stack`` starts Kafka, Prometheus and PostgreSQL knowing only the kernel's
    topics, settings and security: nothing of the sides, nor of the launcher above it."""

    def kernel_or_stack(module: str) -> bool:
        top, _, rest = module.partition(".")
        if top == "launcher":
            return rest == "stack" or rest.startswith("stack.")
        return top == "postmarket"

    found = [
        f"{path.name} imports {module}"
        for path in sorted((ROOT / "launcher" / "stack").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in {"postmarket", "launcher", *SIDES}
        and not kernel_or_stack(module)
    ]
    assert found == []


def test_a_forbidden_import_is_found_wherever_it_is_written(tmp_path: Path) -> None:
    """The rules above read every form of import: at the top, inside a function, type-only,
    a whole module or a name from it; a package merely named alike is not one."""
    module = tmp_path / "kernel_module.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import launcher.stack.kafka\n"
        "from launcher import demo\n"
        "import launcher_tools\n"
        "if TYPE_CHECKING:\n"
        "    from launcher.cli import app\n"
        "def run() -> None:\n"
        "    from launcher.local_worker import LocalWorker\n"
    )
    found = sorted(forbidden_imports([module], "launcher"))
    assert found == [
        f"{module} imports {name}"
        for name in sorted(
            [
                "launcher",
                "launcher.cli",
                "launcher.cli.app",
                "launcher.demo",
                "launcher.local_worker",
                "launcher.local_worker.LocalWorker",
                "launcher.stack.kafka",
            ]
        )
    ]


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


EVIDENCE = ROOT / "evidence"


def evidence_modules() -> dict[str, Path]:
    """Every evidence module by dotted name (the Alembic environment and revisions aside)."""
    return {
        f"evidence.{path.stem}": path
        for path in sorted(EVIDENCE.glob("*.py"))
        if path.name != "__init__.py"
    }


def evidence_imports(path: Path) -> set[str]:
    """The evidence modules ``path`` imports, type-only imports included."""
    modules = evidence_modules()
    return {module for module in imported_modules(path) if module in modules}


PRODUCT = (
    "postmarket",
    "streams",
    "collectors",
    "detectors",
    "dashboards",
    "simulator",
    "evidence",
    "launcher",
)
MODULE_LINES = 600
"""One concept per file: a product module longer than this holds more than one."""
GENERATED: dict[str, str] = {
    "collectors/confidentiality_profile.py": "DICOM PS3.15 Table E.1-1 as data, one entry per"
    " attribute, written by collectors/tooling/generate_confidentiality_profile.py",
}
"""Generated modules, by path, with why their length is no concept's: no one edits them."""


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
    assert lines <= MODULE_LINES, f"{name} has {lines} lines: split it by concept"


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
