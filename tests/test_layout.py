"""The layout's import rules, read from the source: the wings keep to what they may import.

Every module of the package (``pbx_crm/``, and ``agi/`` and ``webui/`` that ship inside it) is
parsed, and each import, at the top or inside a function, is an edge between two modules. The
rules are those the wings' ``__init__`` docstrings state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"pbx_crm": "pbx_crm", "agi": "pbx_crm.agi", "webui": "pbx_crm.webui"}
SERVICE_WINGS = ("pbx_crm.funnel", "pbx_crm.people", "pbx_crm.reporting", "pbx_crm.robots")
# The edges and plumbing a service never calls: they call the services.
NOT_FOR_SERVICES = ("pbx_crm.telephony", "pbx_crm.web", "pbx_crm.webui", "pbx_crm.agi",
                    "pbx_crm.cli", "pbx_crm.simulator", "pbx_crm.sample")
# Inside the robots wing, the scheduler is an edge (like a web route): it may place the
# click-to-call a robot asks for after the commit.
SERVICE_EDGES = {"pbx_crm.robots.scheduler"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            modules[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return modules


MODULES = _modules()


def _nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (read by type checkers
    only: no import at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _nodes(node)


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + [base] * bool(base))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _cycles() -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in IMPORTS[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for module in MODULES:
        if module not in index:
            visit(module)
    return groups


def test_no_two_modules_import_each_other_even_around_a_loop():
    assert _cycles() == []


def test_the_pure_rules_import_nothing_of_the_store_the_services_or_the_edges():
    allowed = {"pbx_crm.enums", "pbx_crm.errors"}
    for module, imported in IMPORTS.items():
        if _within(module, ["pbx_crm.rules"]):
            outside = {i for i in imported if not _within(i, ["pbx_crm.rules"])} - allowed
            assert not outside, f"{module} imports {sorted(outside)}"


def test_the_schema_imports_nothing_of_pbx_crm_but_the_enums():
    for module, imported in IMPORTS.items():
        if _within(module, ["pbx_crm.models"]):
            outside = {i for i in imported if not _within(i, ["pbx_crm.models"])}
            assert outside <= {"pbx_crm.enums"}, f"{module} imports {sorted(outside)}"


def test_the_services_never_import_the_pbx_plumbing_the_web_or_the_cli():
    for module, imported in IMPORTS.items():
        if _within(module, SERVICE_WINGS) and module not in SERVICE_EDGES:
            wrong = sorted(i for i in imported if _within(i, NOT_FOR_SERVICES))
            assert not wrong, f"{module} (a service) imports {wrong}"


@pytest.mark.parametrize("wing", sorted(p.parent.name for p in (ROOT / "pbx_crm").glob(
    "*/__init__.py")))
def test_each_wing_says_what_it_owns_and_what_it_may_import(wing):
    docstring = ast.get_docstring(ast.parse((ROOT / "pbx_crm" / wing / "__init__.py").read_text()))
    assert docstring and "May import" in docstring, f"pbx_crm/{wing}/__init__.py"
