"""No import circle among corrbench's modules (corrbench.methods and corrbench.benchmarks included).

Read statically from the source (no module is imported, so the check takes a fraction of a second), and every
import statement counts: at the top of a module, inside a function, or under ``if TYPE_CHECKING``. An import
deferred into a function hides a circle from the interpreter but not from the reader, and the three circles
issue 12 removed (``datasets/base`` <-> ``datasets/download``, ``geometry`` <-> ``types``, ``marco/checkpoint``
<-> ``marco/model``) were each hidden that way. When this fails, move the definition both modules need to the
one that owns it instead of deferring an import.

The core (``corrbench/``) names no method: methods plug in through the registry, so no core module imports
``corrbench.methods`` or names one of its modules as an import target string (``"corrbench.methods.x:Class"``).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_modules() -> dict[str, Path]:
    """Dotted module name -> source file of every module the wheel installs, as pyproject.toml lays them out
    (``methods/`` installs as ``corrbench.methods``)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    modules = {}
    for package in setuptools["packages"]:
        # setuptools' rule: the folder of the longest mapped prefix, then the rest of the name as folders
        mapped = max((p for p in package_dirs if package == p or package.startswith(p + ".")), key=len, default="")
        folder = ROOT / package_dirs.get(mapped, "") / package[len(mapped):].lstrip(".").replace(".", "/")
        for source in sorted(folder.glob("*.py")):
            modules[package if source.stem == "__init__" else f"{package}.{source.stem}"] = source
    return modules


def imported_modules(name: str, source: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports anywhere in its source."""
    package = name if source.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: one level is the module's own package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(parts + ([node.module] if node.module else []))
            else:
                origin = node.module
            # `from package import submodule` imports the submodule; `from module import name`, the module
            found.update(f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names)
    return (found & known) - {name}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return path[path.index(target):] + [target]
            if target not in done and (circle := visit(target)):
                return circle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (circle := visit(start)):
            return circle
    return None


def test_every_installed_module_is_read():
    modules = package_modules()
    for expected in ("corrbench.cli", "corrbench.datasets.download", "corrbench.methods.marco.model",
                     "corrbench.perf.mining", "corrbench.experiments.marco_synthetic", "corrbench.backbones.dinov2"):
        assert expected in modules
    # none left out: a package missing from pyproject's list would also be missing from a regular install
    sources = {path for folder in ("corrbench", "methods", "benchmarks", "perf", "experiments")
               for path in (ROOT / folder).rglob("*.py")}
    assert sources <= set(modules.values()), sorted(str(p.relative_to(ROOT)) for p in sources - set(modules.values()))


def test_import_graph_is_read_from_every_kind_of_import(tmp_path):
    source = tmp_path / "model.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import pkg.sub.geometry as g\n"
        "from . import checkpoint\n"
        "from ..types import Size\n"
        "if TYPE_CHECKING:\n"
        "    from pkg import cli\n"
        "def build():\n"
        "    from .checkpoint import load\n"
        "    import torch\n"
    )
    known = {"pkg", "pkg.cli", "pkg.types", "pkg.sub", "pkg.sub.model", "pkg.sub.checkpoint", "pkg.sub.geometry"}
    assert imported_modules("pkg.sub.model", source, known) == {
        "pkg.sub.geometry", "pkg.sub.checkpoint", "pkg.types", "pkg.cli"}


def test_find_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_no_import_circle():
    modules = package_modules()
    graph = {name: imported_modules(name, source, set(modules)) for name, source in modules.items()}
    circle = find_circle(graph)
    assert circle is None, f"import circle: {' -> '.join(circle)}"


#: An import target inside ``corrbench.methods``, as ``import_target`` / entry points spell it (the entry-point
#: group's own name, ``"corrbench.methods"``, names no method).
METHOD_TARGET = re.compile(r"^corrbench\.methods[.:][\w.]+(:[\w.]+)?$")


def method_references(name: str, source: Path, known: set[str]) -> set[str]:
    """What ``name`` imports from ``corrbench.methods`` (statically or as an import target string)."""
    imported = {m for m in imported_modules(name, source, known) if m.split(".")[:2] == ["corrbench", "methods"]}
    targets = {node.value for node in ast.walk(ast.parse(source.read_text(), filename=str(source)))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and METHOD_TARGET.match(node.value)}
    return imported | targets


def test_method_references_are_found(tmp_path):
    source = tmp_path / "engine.py"
    source.write_text(
        '"""Docstrings may name corrbench.methods.marco."""\n'
        "def build():\n"
        "    from corrbench.methods.marco import training\n"
        "    return 'corrbench.methods.dinov2_ft:DINOv2FineTunedTrainer'\n"
    )
    known = {"corrbench.engine", "corrbench.methods", "corrbench.methods.marco", "corrbench.methods.marco.training"}
    assert method_references("corrbench.engine", source, known) == {
        "corrbench.methods.marco.training", "corrbench.methods.dinov2_ft:DINOv2FineTunedTrainer"}


def test_the_core_names_no_method():
    modules = package_modules()
    core = {name: source for name, source in modules.items() if source.is_relative_to(ROOT / "corrbench")}
    assert "corrbench.cli" in core and not any(name.startswith("corrbench.methods") for name in core)
    found = {name: sorted(refs) for name, source in core.items() if (refs := method_references(name, source, set(modules)))}
    assert not found, f"core modules that name a method: {found}"
