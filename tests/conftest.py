from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from pgserver import PgServer
from pgserver import bindir as pg_bindir

# No test reaches the Hugging Face hub. huggingface_hub reads this once, at its import: set after it
# (by a test's monkeypatch) it is ignored and the "offline" test waited 23 s on the network instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
BAKEOFF = [sys.executable, "-m", "bakeoff"]


# hypothesis: a few hundred examples per property in `make test`; `make fuzz` sets
# HYPOTHESIS_PROFILE=fuzz for 10,000 each
settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile("fuzz", max_examples=10_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


CHROMIUM = os.environ.get("BAKEOFF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium (Debian's, driven by Playwright), one per test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package "
            "(or set BAKEOFF_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def bakeoff(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run the real `bakeoff` CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*BAKEOFF, *args], capture_output=True, text=True, env=full_env, **{"timeout": 300, **kw}
    )


class FakeProc:
    """`bakeoff fake-server` in its own process (survives a killed client)."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        cmd = [*BAKEOFF, "fake-server", "--port", "0", *args]
        if log is not None:
            cmd += ["--log", str(log)]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"fake server did not start: {line!r} {self.proc.stderr.read()}")
        self.url = m.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def fake_proc() -> Iterator[type[FakeProc]]:
    started: list[FakeProc] = []

    class _Factory(FakeProc):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            started.append(self)

    yield _Factory
    for p in started:
        p.stop()


def wait_for(pred, timeout: float = 30.0, interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Model variants and server logs go to a session temp dir, not the user's cache. Under
    pytest-xdist (`make test` runs 2 workers) each worker has its own (its servers are told
    apart by it), the derived models one folder shared by all (made once, under the ladder's
    file lock)."""
    d = tmp_path_factory.mktemp("bakeoff-cache")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "bakeoff-models"
        shared.mkdir(exist_ok=True)
        (d / "models").symlink_to(shared, target_is_directory=True)
    old = os.environ.get("BAKEOFF_CACHE_DIR")
    os.environ["BAKEOFF_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("BAKEOFF_CACHE_DIR", None)
    else:
        os.environ["BAKEOFF_CACHE_DIR"] = old


# The modules `make check` leaves out (they stay in `make test`): real llama.cpp and PyTorch
# servers, Chromium, the calibration pools, the fault and fuzz runs, the hostile-code corpus.
SLOW_MODULES = {
    "test_local.py",
    "test_audit_local.py",
    "test_audit_engines.py",
    "test_torch_engine.py",
    "test_browser.py",
    "test_browser_overview.py",
    "test_browser_pages.py",
    "test_browser_watch.py",
    "test_calibrate.py",
    "test_fuzz.py",
    "test_faults.py",
    "test_sandbox.py",
    "test_sandbox_run.py",
    "test_audit_fake.py",
    "test_watch_local.py",
    "test_audit_hosted.py",
    "test_audit_consensus_live.py",
    "test_scorer_hosted.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# -- PostgreSQL: a real server for the team store's tests (tests/pgserver.py) ----------------------


@pytest.fixture(scope="session")
def servers(isolated_cache):
    """Real llama.cpp servers, up for the session: F16, a second F16 instance on another thread
    count, Q8_0 and Q2_K (shared by the modules that address them directly)."""
    import asyncio

    from bakeoff.local import ServerSettings, launch, stop, variant_path, wait_ready

    specs = {"f16": ("F16", 1), "f16b": ("F16", 2), "q8_0": ("Q8_0", 1), "q2_k": ("Q2_K", 1)}
    started = {}
    try:
        for name, (variant, threads) in specs.items():
            started[name] = launch(
                name,
                variant_path(variant),
                alias="smol",
                settings=ServerSettings(n_threads=threads),
            )

        async def ready():
            await asyncio.gather(*(wait_ready(s) for s in started.values()))

        asyncio.run(ready())
        yield started
    finally:
        for s in started.values():
            stop(s)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server for the session. Skipped (with the reason) where PostgreSQL is not installed,
    unless BAKEOFF_REQUIRE_PG=1 (`make test`): then its absence fails the tests."""
    missing = None
    bin_dir = pg_bindir()
    if bin_dir is None:
        missing = (
            "PostgreSQL's server is not installed (Debian: apt-get install postgresql, which make"
            " test does; elsewhere set BAKEOFF_PG_BIN to the folder holding initdb and postgres)"
        )
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            missing = "psycopg is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("BAKEOFF_REQUIRE_PG") == "1":
            pytest.fail(f"BAKEOFF_REQUIRE_PG=1 but {missing}")
        pytest.skip(missing)
    assert bin_dir is not None
    server = PgServer(bin_dir)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A new, empty database on the session's server, as a postgresql:// URL."""
    return pg_server.url(pg_server.new_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path) -> str:
    """The store under test, each way: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "bakeoff.db")
    return str(request.getfixturevalue("pg_url"))
