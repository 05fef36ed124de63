"""The layers of docs/architecture.md, read from the code's own imports, so the rule cannot rot.

Each product module belongs to one layer; a module may import its own layer and the layers
``MAY_IMPORT`` lists for it, nothing else. The few imports that still break the rule are
listed by name in ``NOT_YET``: a new one fails the test, and so does one that is mended
without being struck from the list (so the list only shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (
    "detectors",
    "postmarket",
    "collectors",
    "streams",
    "dashboards",
    "simulator",
    "evidence",
    "launcher",
)

COMMAND_ENTRY = "postmarket.__main__"
"""``python -m postmarket``: the command's own entry, in the kernel's folder only because
Python finds ``-m NAME`` by package name; it runs the launcher's CLI and nothing imports it."""

MAY_IMPORT: dict[str, set[str]] = {
    "detectors": set(),
    "kernel": set(),
    "stack": {"kernel"},
    "collectors": {"kernel"},
    "streams": {"kernel", "detectors"},
    "evidence": {"kernel", "detectors"},
    "dashboards": {"kernel", "collectors", "evidence", "streams"},
    "simulator": {"kernel", "detectors", "collectors", "streams"},
    "launcher": {
        "kernel",
        "detectors",
        "stack",
        "collectors",
        "streams",
        "evidence",
        "dashboards",
        "simulator",
    },
}
"""Dashboards read the sides' metric definitions; the simulator drives the sides' own code;
the launcher (the ``postmarket`` command, the demo, a local worker) composes them all, and
its local stack (``launcher.stack``) needs only the kernel."""

NOT_YET: set[tuple[str, str]] = set()
"""Imports against the layers still to mend (issue 18), each named once."""


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "launcher":
        return "stack" if parts[1:2] == ["stack"] else "launcher"
    if module == COMMAND_ENTRY:
        return "launcher"
    if parts[0] != "postmarket":
        return parts[0]
    return "kernel"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """The product modules a file imports, at its top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PRODUCT)


def product_files() -> Iterator[Path]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts and "generated" not in path.parts:
                yield path


def against_the_layers() -> set[tuple[str, str]]:
    found = set()
    for path in product_files():
        source = module_name(path)
        for target in imported(path):
            ours, theirs = layer(source), layer(target)
            if ours != theirs and theirs not in MAY_IMPORT[ours]:
                found.add((source, target))
    return found


def test_every_import_keeps_to_the_layers_but_the_named_few() -> None:
    found = against_the_layers()
    assert sorted(found - NOT_YET) == [], "imports against docs/architecture.md's layers"
    assert sorted(NOT_YET - found) == [], "mended: strike these from NOT_YET"


def test_every_product_module_has_a_layer() -> None:
    layers = {layer(module_name(path)) for path in product_files()}
    assert layers <= set(MAY_IMPORT)


def test_the_layers_form_no_circle() -> None:
    """As the table allows them, no layer reaches back to itself through others."""

    def below(name: str) -> set[str]:
        found: set[str] = set()
        frontier = set(MAY_IMPORT[name])
        while frontier:
            found |= frontier
            frontier = {lower for upper in frontier for lower in MAY_IMPORT[upper]} - found
        return found

    assert [name for name in MAY_IMPORT if name in below(name)] == []
