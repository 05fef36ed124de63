"""The two groups of ``detectors``, read from the code so the grouping cannot rot (issue 18).

**Sequential detectors** are ``detectors/``'s own modules: the contract (``base``), one module
per detector class that follows it, every one of them in the contract checklist
(``DETECTOR_CASES`` in ``conftest.py``), and the design helpers named in ``DESIGN_HELPERS``.
**Batch statistics** are ``detectors/statistics/``: functions and result classes over a whole
sample. No statistics module defines a contract detector, and none imports the sequential
group: a detector may build on a batch statistic (the windowed performance estimate is the
streaming form of the confidence-based estimate), never the reverse. Of the contract's module
a statistic takes only the input checks (``check_*``), and every import is absolute, so the
sub-package never stands in for the standard library's ``statistics``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import detectors
import detectors.statistics
from detectors import Detector

DETECTORS = Path(detectors.__file__).resolve().parent

CONTRACT = "base"
"""The contract's module: :class:`detectors.base.Detector`, its result and the input checks."""

DESIGN_HELPERS: dict[str, str] = {
    "fleet_false_alarm_budget": "the in-control ARL each stream's detectors are built with,"
    " from the fleet's false-alarm budget (a design quantity of sequential detectors only)",
    "reference_calibration": "the critical values of the windowed KS and chi-square detectors,"
    " bootstrapped for the reference each holds (their thresholds; only they import it)",
}
"""Top-level modules that define no detector but serve the detectors' design, with what each
serves. A module that computes a statistic of a whole sample for its own sake belongs in
``detectors/statistics/`` instead."""


def top_level_modules(package: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(package.glob("*.py")) if path.stem != "__init__"}


def statistics_modules(package: Path) -> dict[str, Path]:
    folder = package / "statistics"
    return {path.stem: path for path in sorted(folder.rglob("*.py")) if path.stem != "__init__"}


def base_names(node: ast.ClassDef) -> set[str]:
    """The names a class statement derives from (``Detector``, ``base.Detector``, ...)."""
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def contract_classes(package: Path) -> dict[Path, set[str]]:
    """Every class in the package that derives from ``Detector``, directly or through another
    such class of the package, by the file that defines it."""
    classes = [
        (path, node)
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ClassDef)
    ]
    contract = {"Detector"}
    grown = True
    while grown:
        before = len(contract)
        contract |= {node.name for _, node in classes if base_names(node) & contract}
        grown = len(contract) > before
    found: dict[Path, set[str]] = {}
    for path, node in classes:
        if base_names(node) & contract:
            found.setdefault(path, set()).add(node.name)
    return found


def imports_of_the_sequential_group(path: Path) -> list[str]:
    """What ``path`` imports of ``detectors`` beyond the statistics and the input checks, and
    any relative import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"{path.name}: relative import from {'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [alias.name for alias in node.names]
            if node.module == "detectors.base":
                found += [f"{path.name}: detectors.base.{n}" for n in names if "check_" not in n]
            elif node.module == "detectors":
                found += [f"{path.name}: detectors.{n}" for n in names if n != "statistics"]
            elif node.module.startswith("detectors.") and not in_statistics(node.module):
                found.append(f"{path.name}: {node.module}")
        elif isinstance(node, ast.Import):
            found += [
                f"{path.name}: {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "detectors" and not in_statistics(alias.name)
            ]
    return found


def in_statistics(module: str) -> bool:
    return module == "detectors.statistics" or module.startswith("detectors.statistics.")


def misplaced_modules(package: Path) -> list[str]:
    """Top-level modules that are neither the contract, a detector's, nor a named helper."""
    with_detectors = {path.stem for path in contract_classes(package) if path.parent == package}
    allowed = {CONTRACT, *with_detectors, *DESIGN_HELPERS}
    return sorted(set(top_level_modules(package)) - allowed)


def test_every_contract_detector_is_in_a_top_level_module_and_in_the_checklist(
    detector_cases: dict[type[Detector], Any],
) -> None:
    found = {
        (f"detectors.{path.stem}", name)
        for path, names in contract_classes(DETECTORS).items()
        if path.parent == DETECTORS
        for name in names
    }
    checked = {(klass.__module__, klass.__name__) for klass in detector_cases}
    assert found == checked


def test_no_statistics_module_defines_a_contract_detector() -> None:
    in_statistics_folder = {
        f"{path.relative_to(DETECTORS)}: {sorted(names)}"
        for path, names in contract_classes(DETECTORS).items()
        if path.parent != DETECTORS
    }
    assert in_statistics_folder == set()
    for info in pkgutil.walk_packages(detectors.statistics.__path__, "detectors.statistics."):
        importlib.import_module(info.name)
    registered = [k for k in Detector._registry.values() if in_statistics(k.__module__)]
    assert registered == []


def test_the_statistics_import_nothing_of_the_sequential_group() -> None:
    paths = [*statistics_modules(DETECTORS).values(), DETECTORS / "statistics" / "__init__.py"]
    assert len(paths) > 10, "the statistics modules are found"
    assert [line for path in paths for line in imports_of_the_sequential_group(path)] == []


def test_every_top_level_module_is_the_contract_a_detector_or_a_design_helper() -> None:
    assert misplaced_modules(DETECTORS) == []
    helpers_with_detectors = {
        path.stem for path in contract_classes(DETECTORS) if path.stem in DESIGN_HELPERS
    }
    assert helpers_with_detectors == set()
    assert set(DESIGN_HELPERS) <= set(top_level_modules(DETECTORS)), "no stale helper named"


@pytest.mark.parametrize(
    ("package", "group"), [(detectors, "sequential"), (detectors.statistics, "statistics")]
)
def test_each_package_exports_only_its_own_group(package: Any, group: str) -> None:
    exported = {name: getattr(package, name) for name in package.__all__}
    modules = {name: obj.__module__ for name, obj in exported.items() if callable(obj)}
    assert len(modules) > 15, "the classes and functions exported are found"
    wrong = {
        name: module
        for name, module in modules.items()
        if in_statistics(module) != (group == "statistics")
    }
    assert wrong == {}


def test_a_misplaced_module_is_found_wherever_it_is_written(tmp_path: Path) -> None:
    """The rules above find each kind of violation in a planted package: a statistic that
    imports a detector (by name, by module, inside a function, relatively), one that defines
    a detector (directly or through another), and a batch statistic left at the top."""
    package = tmp_path / "detectors"
    (package / "statistics").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("class Detector:\n    pass\n")
    (package / "cusum.py").write_text(
        "from detectors.base import Detector\nclass CUSUM(Detector):\n    pass\n"
    )
    (package / "kappa.py").write_text("def kappa() -> float:\n    return 0.0\n")
    (package / "statistics" / "__init__.py").write_text(
        "from detectors.statistics.auc import auc\n"
    )
    (package / "statistics" / "auc.py").write_text(
        "import detectors.cusum\n"
        "from detectors import BernoulliCUSUM, statistics\n"
        "from detectors.base import Detector, check_finite\n"
        "from detectors.statistics.kappa import kappa\n"
        "from . import cusum\n"
        "class Sneaky(detectors.cusum.CUSUM):\n"
        "    pass\n"
        "def auc() -> float:\n"
        "    from detectors.windowed_ks_drift import WindowedKSDrift\n"
        "    return 0.5\n"
    )
    assert misplaced_modules(package) == ["kappa"]
    planted = contract_classes(package)
    assert planted == {
        package / "cusum.py": {"CUSUM"},
        package / "statistics" / "auc.py": {"Sneaky"},
    }
    assert sorted(imports_of_the_sequential_group(package / "statistics" / "auc.py")) == [
        "auc.py: detectors.BernoulliCUSUM",
        "auc.py: detectors.base.Detector",
        "auc.py: detectors.cusum",
        "auc.py: detectors.windowed_ks_drift",
        "auc.py: relative import from .",
    ]
    assert imports_of_the_sequential_group(package / "statistics" / "__init__.py") == []
