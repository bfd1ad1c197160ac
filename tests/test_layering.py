"""The package's layering, read from the source with ``ast`` (nothing is imported).

Every ``import`` of a dvpt module counts, also one inside a function: a lazy import hides
a dependency from the reader, not from the design. A module may import modules of its own
layer or of lower ones; no set of modules imports itself round in a cycle. docs/architecture.md
("How the code is laid out") explains the layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "dvpt"

#: lowest first; a name is a top-level package or module of dvpt, or a dotted module that
#: sits lower than its package (``engine.io``, ``engine.device``: helpers that import no other
#: layer, used by methods and backbones too)
LAYERS: list[set[str]] = [
    {"errors", "registry", "version", "files", "engine.io", "engine.device"},
    {"config"},
    {"data"},
    {"backbones"},
    {"prompts", "losses"},
    {"methods"},
    {"engine"},
    {"protocols"},
    {"inference", "report", "sweep", "experiments"},
    {"commands", "app"},
    {"cli", "__init__", "__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def runtime_nodes(tree: ast.AST):
    """Every node, except the body of ``if TYPE_CHECKING:`` (read by type checkers only)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """dvpt modules ``name`` imports anywhere in its source (at run time)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "dvpt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dvpt":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(submodules or {target})
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    rest = module.split(".")[1:] or ["__init__"]
    for depth in range(len(rest), 0, -1):  # the most specific entry wins (engine.io before engine)
        key = ".".join(rest[:depth])
        for index, names in enumerate(LAYERS):
            if key in names:
                return index
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in tests/test_layering.py")


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_reaches_up_a_layer():
    upward = sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                    for a, targets in graph().items() for b in targets if layer_of(b) > layer_of(a))
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("lower,higher", [("engine", "protocols"), ("data", "backbones"), ("config", "methods"),
                                          ("methods", "engine"), ("data", "engine")])
def test_named_boundaries(lower, higher):
    crossing = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                      if a.split(".")[1:2] == [lower] and b.split(".")[1:2] == [higher] and layer_of(b) > 0)
    assert not crossing, crossing


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_can_fail():
    """The detectors find what they look for (a test that cannot fail proves nothing)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("dvpt.engine.io") < layer_of("dvpt.config.loader") < layer_of("dvpt.engine.trainer")
    assert layer_of("dvpt.protocols.base2novel") > layer_of("dvpt.engine.runner")
