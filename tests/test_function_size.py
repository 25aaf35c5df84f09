"""No function over MAX_LINES lines, in the Python layer (emseg/) or the native core (csrc/): a
function that long does several things, each of which wants a name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
NATIVE_SUFFIXES = (".h", ".cpp", ".cu")


def python_functions(text: str):
    """(name, first line, lines) of every function and method, its decorators and docstring included."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, first, node.end_lineno - first + 1


_LITERALS = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_SCOPE = re.compile(r"\b(namespace|struct|class|union|enum)\b|extern\s*\"\"\s*$")
_CONTROL = re.compile(r"^\s*(if|for|while|switch|catch|do|else)\b")


def _code_only(text: str) -> str:
    """Comments, string literals and preprocessor lines blanked, line breaks kept."""
    out = _LITERALS.sub(lambda m: "\n" * m.group(0).count("\n") if m.group(0)[0] == "/" else '""', text)
    return re.sub(r"^\s*#[^\n]*", "", out, flags=re.M)


def native_functions(text: str):
    """(name, line of its opening brace, lines) of every C++ function body at namespace, struct or
    class level: a brace after a parenthesised head that is no control statement, no type and no
    initialiser. Lambdas and blocks inside a function count as part of it."""
    code = _code_only(text)
    stack: list[tuple[str, int, str]] = []  # (kind, line, name)
    line, head_start = 1, 0
    for i, ch in enumerate(code):
        if ch == "\n":
            line += 1
        elif ch == "{":
            head = " ".join(code[head_start:i].split())
            at_scope = all(kind == "scope" for kind, _, _ in stack)
            before_paren = head.split("(")[0]
            if (
                at_scope
                and "(" in head
                and not _SCOPE.search(before_paren)
                and not _CONTROL.match(head)
                and "=" not in before_paren
            ):
                names = re.findall(r"([~\w:]+)\s*\(", head)
                stack.append(("function", line, names[0] if names else head[:40]))
            elif at_scope and (not head or _SCOPE.search(head)):
                stack.append(("scope", line, head))
            else:
                stack.append(("block", line, head))
            head_start = i + 1
        elif ch == "}":
            kind, start, name = stack.pop()
            if kind == "function":
                yield name, start, line - start + 1
            head_start = i + 1
        elif ch == ";":
            head_start = i + 1


PYTHON_FILES = sorted((ROOT / "emseg").rglob("*.py"))
NATIVE_FILES = sorted(p for p in (ROOT / "csrc").rglob("*") if p.suffix in NATIVE_SUFFIXES)


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_function_size(path):
    long = [
        f"{name} (line {first}): {n} lines" for name, first, n in python_functions(path.read_text()) if n > MAX_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: functions over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("path", NATIVE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_native_function_size(path):
    long = [
        f"{name} (line {first}): {n} lines" for name, first, n in native_functions(path.read_text()) if n > MAX_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: functions over {MAX_LINES} lines: {long}"


def test_the_native_scanner_finds_functions_and_their_length():
    """The scanner itself, on a planted file: methods, free functions, templates and a function
    whose braces hide in strings and comments; control blocks, lambdas, structs and initialisers are
    not functions."""
    body = "\n".join(f"  x += {k};" for k in range(90))
    text = f"""
namespace emseg {{
struct Args {{
  int n;
  int twice() const {{ return 2 * n; }}
}};
constexpr int kTable[] = {{1, 2, 3}};
template <typename T>
EMSEG_HD void long_one(T* out) {{
  const char* brace = "}}{{";  // }} in a comment
  int x = 0;
  for (int i = 0; i < 3; ++i) {{
    auto add = [&](int v) {{ x += v; }};
    add(i);
  }}
{body}
  *out = x;
}}
/* void commented_out() {{ }} */
}}  // namespace emseg
"""
    found = {name: n for name, _, n in native_functions(text)}
    assert found == {"twice": 1, "long_one": 99}
    assert sum(1 for _, _, n in native_functions((ROOT / "csrc" / "ops.cpp").read_text())) >= 1


def test_the_python_scanner_counts_decorators_and_docstrings():
    text = (
        '@decorator\ndef f():\n    """Doc."""\n' + "    x = 1\n" * 5 + "\n\nclass A:\n    def g(self):\n        pass\n"
    )
    assert {name: n for name, _, n in python_functions(text)} == {"f": 8, "g": 2}
