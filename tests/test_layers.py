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
    {"watch"},
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


_RAW_CLIENT_MODULES = ("urllib.request", "http.client", "requests", "httpx", "urllib3")
"""HTTP clients of their own: imported anywhere but where `_RAW_CLIENTS_ALLOWED` says, they would
be a second way to a model (no limits, no redaction, no classified errors)."""
_RAW_AIOHTTP = ("ClientSession", "TCPConnector", "request")
"""aiohttp's ways to make a client (`aiohttp.ClientSession` named as a type is not one)."""
_RAW_CLIENTS_ALLOWED: dict[str, set[str]] = {
    # the one session factory, `endpoints.open_session()`: every other aiohttp session is its
    "endpoints/_session.py": {"aiohttp.ClientSession", "aiohttp.TCPConnector"},
    # `endpoints.post_json()`: the bounded synchronous POST (the audit's HTTP reference scorer)
    "endpoints/_sync.py": {"http.client"},
    # `local.answers()`: the listing check of the local lineup's own servers (`local status`)
    "local/_servers.py": {"urllib.request"},
    # the proxy is a server: it forwards each request to its upstream on a session of its own,
    # with no timeout (the caller's client times the call), which `open_session` does not offer
    "proxy/_server.py": {"aiohttp.ClientSession", "aiohttp.TCPConnector"},
}
"""Who may make a raw HTTP client, and which (`fake` and `sandbox` need none: the fake is servers
only; the sandbox names `http.client.connect` as an audit event it blocks, a string). The list
only shrinks: an entry the module no longer needs fails too."""


def _annotations(tree: ast.Module) -> set[int]:
    """ids of the nodes inside type annotations (a type named is no client made)."""
    roots: list[ast.expr | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for r in roots if r is not None for n in ast.walk(r)}


def _raw_clients(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) of every raw HTTP client imported or made: an import of `_RAW_CLIENT_MODULES`
    (also `from urllib import request`), aiohttp's `_RAW_AIOHTTP` referred to outside a type."""

    def banned(module: str) -> str | None:
        hit = [m for m in _RAW_CLIENT_MODULES if module == m or module.startswith(m + ".")]
        return hit[0] if hit else None

    out: list[tuple[int, str]] = []
    typed = _annotations(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, b) for a in node.names if (b := banned(a.name))]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            if node.module == "aiohttp":
                names = [n for n in names if n.split(".")[1] in _RAW_AIOHTTP]
                out += [(node.lineno, n) for n in names]
            else:
                out += [(node.lineno, b) for n in [node.module, *names] if (b := banned(n))][:1]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            dotted = f"{node.value.id}.{node.attr}"
            made = (
                node.value.id == "aiohttp" and node.attr in _RAW_AIOHTTP and id(node) not in typed
            )
            if made or dotted in _RAW_CLIENT_MODULES:  # also `import urllib`, `urllib.request.…`
                out.append((node.lineno, dotted))
    return out


def test_raw_http_clients_live_only_in_the_packages_that_own_the_wire():
    """One way to a model: every HTTP client is made by `endpoints` (`open_session`, `post_json`),
    save the named exceptions of `_RAW_CLIENTS_ALLOWED`."""
    wrong, used = [], {m: set[str]() for m in _RAW_CLIENTS_ALLOWED}
    for path, _, tree in _modules():
        module = path.relative_to(SRC).as_posix()
        for line, what in sorted(set(_raw_clients(tree))):
            if what in _RAW_CLIENTS_ALLOWED.get(module, set()):
                used[module].add(what)
            else:
                wrong.append(f"{path.relative_to(SRC.parent)}:{line}: {what}")
    assert not wrong, (
        "a raw HTTP client outside endpoints (use endpoints.open_session / post_json):\n"
        + "\n".join(wrong)
    )
    stale = {m: sorted(a - used[m]) for m, a in _RAW_CLIENTS_ALLOWED.items() if a - used[m]}
    assert not stale, f"no longer needed: strike from _RAW_CLIENTS_ALLOWED: {stale}"


def test_the_raw_client_check_sees_every_form():
    """The check itself: each way of making a client is found; a type annotation is not one."""
    src = (
        "import urllib.request\nfrom urllib import request\nimport http.client as h\n"
        "from requests import get\nimport httpx\nfrom aiohttp import ClientSession, web\n"
        "import aiohttp\n"
        "async def f(s: aiohttp.ClientSession) -> aiohttp.ClientSession:\n"
        "    x: aiohttp.ClientSession | None = None\n"
        "    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))\n"
        "import urllib\nurllib.request.urlopen('http://x')\n"
    )
    assert sorted(_raw_clients(ast.parse(src))) == [
        (1, "urllib.request"),
        (2, "urllib.request"),
        (3, "http.client"),
        (4, "requests"),
        (5, "httpx"),
        (6, "aiohttp.ClientSession"),
        (10, "aiohttp.ClientSession"),
        (10, "aiohttp.TCPConnector"),
        (12, "urllib.request"),
    ]
