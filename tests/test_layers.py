"""The architecture as tests: the packages' dependency order (docs/ARCHITECTURE.md), SQL only in the
store, and the size limits of functions and modules. Read from the source (every import, also those
inside functions), so a cycle held together by a function-level import is caught too."""

from __future__ import annotations

import ast
import re
import statistics
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "bakeoff"

LAYERS: list[set[str]] = [
    {"_procs", "_version"},
    {"stats", "endpoints"},
    {"lineups", "store"},
    {"sandbox"},
    {"suites"},
    {"proxy", "fake", "local"},
    {"providers", "discovery"},
    {"plugins"},
    {"runs"},
    {"perf", "audit"},
    {"arena"},
    {"ui"},
    {"_preflight"},
    {"_pipeline"},
    {"cli"},
    {"__init__", "__main__"},
]
"""Bottom to top: a package imports only from packages in layers below its own."""


def _modules() -> list[tuple[Path, str, ast.Module]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        package = rel.parts[0].removesuffix(".py")
        out.append((path, package, ast.parse(path.read_text(), str(path))))
    return out


def _layer(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"package {package!r} is in no layer of tests/test_layers.py: add it")


def _imported(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top package under bakeoff) of every import of bakeoff's own modules."""
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bakeoff":  # from bakeoff import x: the facade
                names = ["__init__"]
            elif node.module.startswith("bakeoff."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("bakeoff.")]
        out += [(node.lineno, n) for n in names]
    return out


def test_packages_import_only_from_the_layers_below():
    wrong = []
    for path, package, tree in _modules():
        for line, target in _imported(tree):
            if target != package and _layer(target) >= _layer(package):
                wrong.append(f"{path.relative_to(SRC.parent)}:{line}: {package} imports {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_layer_check_sees_a_function_level_import(tmp_path):
    """The check itself: an upward import hidden inside a function is found."""
    tree = ast.parse("def f():\n    from bakeoff.audit import run_audit\n")
    assert _imported(tree) == [(2, "audit")]
    assert _layer("audit") > _layer("runs")


_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WITH)\b", re.I)


def test_sql_lives_only_in_the_store():
    wrong = []
    for path, package, tree in _modules():
        if package == "store":
            continue
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            if (
                text is not None
                and _SQL.match(text)
                and re.search(r"\b(FROM|INTO|SET|TABLE)\b", text)
            ):
                wrong.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {text[:60]!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany"):
                owner = node.value
                if isinstance(owner, ast.Attribute) and owner.attr == "db":
                    wrong.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: .db.{node.attr}")
    assert not wrong, "SQL outside src/bakeoff/store/:\n" + "\n".join(wrong)


MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500
LONG_FUNCTIONS_LEFT: set[str] = set()
"""Not yet split (issue #18): the list only shrinks — a new long function fails, and so does a
listed one that was split without striking it from here."""
BIG_MODULES_LEFT: set[str] = set()
"""Not yet split (issue #18), likewise."""


def test_no_function_is_longer_than_80_lines():
    long = set()
    for path, _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.add(f"{path.relative_to(SRC).as_posix()}:{node.name}")
    assert not long - LONG_FUNCTIONS_LEFT, "functions over 80 lines: split them"
    assert not LONG_FUNCTIONS_LEFT - long, "split: strike them from LONG_FUNCTIONS_LEFT"


def test_modules_are_small():
    sizes = {
        p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p, _, _ in _modules()
    }
    big = {p for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big - BIG_MODULES_LEFT, (
        f"modules over {MAX_MODULE_LINES} lines: {big - BIG_MODULES_LEFT}"
    )
    assert not BIG_MODULES_LEFT - big, "split: strike them from BIG_MODULES_LEFT"
    assert statistics.median(sizes.values()) <= 250
