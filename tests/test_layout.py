"""The Python layer's shape: modules of a readable size, imports at the top, layers one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emseg"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> set[str]:
    """The emseg modules an import statement loads."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "emseg"}
    if node.level:
        base = importer.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "emseg":
        return set()
    found = {target}
    for alias in node.names:  # `from . import ops` names a submodule
        if f"{target}.{alias.name}" in MODULES:
            found.add(f"{target}.{alias.name}")
    return found


def imports_of(name: str) -> list[tuple[set[str], bool, int]]:
    """(modules, at top level, line) for every import in the module."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((resolve(name, path.name == "__init__.py", node), id(node) in top, node.lineno))
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_emseg_imports_at_the_top(name):
    late = [line for mods, at_top, line in imports_of(name) if mods and not at_top]
    assert not late, f"{MODULES[name]}: emseg imported inside a function or block at lines {late}"


def test_no_import_cycle():
    graph = {
        name: {m for mods, _, _ in imports_of(name) for m in mods if m in MODULES and m != name} for name in MODULES
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_layout_check_finds_a_cycle(tmp_path, monkeypatch):
    """The cycle check itself: two modules importing each other are reported."""
    (tmp_path / "emseg").mkdir()
    (tmp_path / "emseg" / "__init__.py").write_text("")
    (tmp_path / "emseg" / "a.py").write_text("from . import b\n")
    (tmp_path / "emseg" / "b.py").write_text("from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "emseg")
    fake = {module_name(p): p for p in sorted((tmp_path / "emseg").rglob("*.py"))}
    monkeypatch.setattr(__import__(__name__), "MODULES", fake)
    with pytest.raises(pytest.fail.Exception, match="import cycle: emseg.a -> emseg.b -> emseg.a"):
        test_no_import_cycle()
