"""The shape stays: imports point one way (modelhub -> serving -> hub -> storage, and every layer
may use schemas), no module names a higher layer even in a string, and no modules import each
other in a cycle (imports inside functions included: a lazy import does not make a cycle go
away)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.processes import REPO

PACKAGES = ("modelhub", "serving", "hub", "storage", "schemas")
#: What each layer may import besides itself.
ALLOWED = {
    "schemas": set(),
    "storage": {"schemas"},
    "hub": {"storage", "schemas"},
    "serving": {"hub", "schemas", "storage"},
    "modelhub": {"serving", "hub", "storage", "schemas"},
}
#: A dotted path to one of our modules inside a string ("serving.app:create_app()").
DOTTED = re.compile(r"\b(" + "|".join(PACKAGES) + r")\.[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its code, resolved to module names."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] in PACKAGES and target != name:
                found.add(target)
    return found


def strings(path: Path) -> set[str]:
    """Dotted paths to our modules written in string constants (docstrings left out)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {match.group(0) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings
            for match in DOTTED.finditer(node.value)}


KNOWN = modules()
GRAPH = {name: imports(name, path, KNOWN) for name, path in KNOWN.items()}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_imports_and_module_strings_point_down_the_layers(name):
    layer = name.split(".")[0]
    allowed = ALLOWED[layer] | {layer}
    upward = sorted(t for t in GRAPH[name] if t.split(".")[0] not in allowed)
    assert not upward, f"{name} imports {upward}, above or beside its layer"
    named = sorted(s for s in strings(KNOWN[name]) if s.split(".")[0] not in allowed)
    assert not named, f"{name} names {named} in a string, above or beside its layer"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # A package's __init__ re-exporting its own modules is not a cycle of design.
    return [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".")
                                         for a, b in zip(c, c[1:]))]


def test_no_modules_import_each_other_in_a_cycle():
    assert not find_cycles(GRAPH), f"import cycles: {find_cycles(GRAPH)}"


def test_the_check_itself_sees_imports_and_strings(tmp_path):
    """A self-test, so the check cannot pass by seeing nothing."""
    source = tmp_path / "probe.py"
    source.write_text('import serving.manager\nfrom hub import registry\n'
                      'def f():\n    from storage import base\n    return "modelhub.app:create_app()"\n')
    assert imports("storage.probe", source, KNOWN) >= {"serving.manager", "hub.registry",
                                                       "storage.base"}
    assert strings(source) == {"modelhub.app"}
    assert find_cycles({"storage.base": {"storage.hashing"}, "storage.hashing": {"storage.base"}})
    assert len(KNOWN) > 40 and sum(map(len, GRAPH.values())) > 100
