"""`bakeoff.run()` from Python: the same pipeline and the same summary as `bakeoff run --json`."""

from __future__ import annotations

import asyncio

import pytest

import bakeoff
from conftest import bakeoff as cli

LINEUP = """
reference: ref
run: {suites: [arith], limit: 4, probe: true, probe_max_context: 512}
audit: {budget: 20, batch: 10, seed: 0}  # a fixed seed: the two runs compared send the same prompts
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
  - {name: other, provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}
"""
VOLATILE_RUN = ("run_id", "created_at", "finished_at", "pareto")  # ids, clocks, speed
VOLATILE_ENDPOINT = ("ttft_ms", "ttft_first_send_ms", "output_tok_s", "bill")
# the bill: the CLI run replays the audit's repeated calls from its cache (counted as cached),
# the library run is told not to cache


def _stable(summary: bakeoff.RunSummary) -> dict:
    d = summary.to_json()
    for k in VOLATILE_RUN:
        d.pop(k)
    for e in d["endpoints"]:
        for k in VOLATILE_ENDPOINT:
            e.pop(k)
    return d


def test_library_run_returns_the_summary_the_cli_prints(tmp_path):
    lu = tmp_path / "l.yaml"
    lu.write_text(LINEUP)
    report = tmp_path / "r.html"
    notes: list[str] = []
    lib = bakeoff.run(lu, db=tmp_path / "lib.db", report=report, use_cache=False, log=notes.append)
    assert isinstance(lib, bakeoff.RunSummary) and lib.status == "complete"
    assert lib.schema_version == 2 and report.stat().st_size > 10_000
    # fidelity and capabilities are in it, typed
    assert lib.endpoint("ref").fidelity.verdict == "reference"
    assert lib.endpoint("other").fidelity.verdict == "different"
    assert lib.endpoint("twin").fidelity.verdict != "different"
    assert lib.endpoint("twin").capabilities["stream_usage"] in ("yes", "accepted", "no")
    assert lib.endpoint("twin").suites["arith"].n == 4

    r = cli("run", "-c", str(lu), "--db", str(tmp_path / "cli.db"), "--json", "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    printed = bakeoff.RunSummary.model_validate_json(r.stdout)
    assert '"schema_version": 2' in r.stdout
    assert _stable(printed) == _stable(lib)

    # the async twin, and the same lineup again resumes nothing: a new run of the same calls
    report2 = tmp_path / "r2.html"  # written off the loop, over its own connection
    again = asyncio.run(bakeoff.arun(lu, db=tmp_path / "lib.db", report=report2, use_cache=False))
    assert again.run_id != lib.run_id and _stable(again) == _stable(lib)
    assert report2.stat().st_size > 10_000


def test_library_run_refuses_before_any_call_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_API_KEY", raising=False)
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "endpoints:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1', model: m,"
        " api_key_env: NO_SUCH_API_KEY}\nrun: {suites: [arith]}\n"
    )
    with pytest.raises(bakeoff.RunError, match="NO_SUCH_API_KEY"):
        bakeoff.run(lu, db=tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()  # refused before a database was made
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - {name: a, provider: fake, max_concurrency: -1}\n")
    with pytest.raises(bakeoff.RunError, match=r"bad\.yaml:2: endpoints\[0\]\.max_concurrency"):
        bakeoff.run(bad, db=tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()


def test_ctrl_c_in_library_run_returns_the_interrupted_summary(tmp_path, fake_proc):
    """A notebook user's Ctrl-C: the calls stop, the run is stored as interrupted, its summary is
    returned; `run(resume=...)` finishes it."""
    import json
    import signal
    import sqlite3
    import subprocess
    import sys

    from conftest import wait_for

    srv = fake_proc("--ttft-ms", "400")
    lu = tmp_path / "l.yaml"
    lu.write_text(
        f"run: {{suites: [arith], limit: 30, probe: false}}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{srv.url}', max_concurrency: 2}}\n"
    )
    db = tmp_path / "b.db"
    code = (
        "import json, sys, bakeoff\n"
        f"s = bakeoff.run({str(lu)!r}, db={str(db)!r}, report=False)\n"
        "print(json.dumps({'status': s.status, 'run_id': s.run_id}))\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as at a terminal
    )

    def ok_calls() -> int:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            return con.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    wait_for(lambda: ok_calls() >= 3, timeout=60, interval=0.01)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr[-2000:]
    got = json.loads(stdout)
    assert got["status"] == "interrupted"
    done = bakeoff.run(resume=got["run_id"], db=db, report=False)
    assert done.status == "complete" and done.endpoints[0].successes == 30


def test_cancelling_arun_stores_the_run_as_interrupted(tmp_path, fake_proc):
    import sqlite3

    srv = fake_proc("--ttft-ms", "300")
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [arith], limit: 30, probe: false}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{srv.url}', max_concurrency: 2}}\n"
    )
    db = tmp_path / "b.db"

    def ok_calls() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                return con.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    async def main() -> None:
        task = asyncio.create_task(bakeoff.arun(lu, db=db, report=False))
        # cancelled once a call is stored, however long the start took on a loaded machine (a
        # fixed 2 s sleep saw none); the other 29 need at least 14 more rounds of 0.3 s
        for _ in range(1200):
            if ok_calls() >= 1 or task.done():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    n_ok = con.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok'").fetchone()[0]
    assert 0 < n_ok < 30
    done = bakeoff.run(db=db, resume=con.execute("SELECT id FROM runs").fetchone()[0], report=False)
    assert done.status == "complete" and done.endpoints[0].successes == 30


SMALL = """
run: {suites: [arith], limit: 2, probe: false}
endpoints:
  - {name: ep, provider: fake, fake: {mode: echo}}
"""
STEPS = ("_preflighted", "_begin", "execute_run", "_finish")


def _record_steps(monkeypatch) -> list[str]:
    """Every step of `_pipeline` wrapped to note its name, then do what it did."""
    import functools
    import inspect

    from bakeoff import _pipeline

    seen: list[str] = []
    for name in STEPS:
        step = getattr(_pipeline, name)
        if inspect.iscoroutinefunction(step):

            async def noted(*a, _step=step, _name=name, **kw):
                seen.append(_name)
                return await _step(*a, **kw)
        else:

            def noted(*a, _step=step, _name=name, **kw):
                seen.append(_name)
                return _step(*a, **kw)

        monkeypatch.setattr(_pipeline, name, functools.wraps(step)(noted))
    return seen


def test_the_cli_and_the_library_go_through_the_same_pipeline_steps(tmp_path, monkeypatch):
    """`bakeoff run` is a shell over `bakeoff.run()`: a pipeline step patched is seen by both, in
    the same order, and a step that fails fails both the same way."""
    import signal

    from typer.testing import CliRunner

    lu = tmp_path / "l.yaml"
    lu.write_text(SMALL)
    seen = _record_steps(monkeypatch)
    lib = bakeoff.run(lu, db=tmp_path / "lib.db", report=False)
    assert lib.status == "complete" and seen == list(STEPS)

    seen.clear()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        from bakeoff.cli._app import app

        db = str(tmp_path / "cli.db")
        r = CliRunner().invoke(app, ["run", "-c", str(lu), "--db", db, "--json", "--no-report"])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert r.exit_code == 0, r.output
    assert seen == list(STEPS)
    assert bakeoff.RunSummary.model_validate_json(r.stdout).endpoints[0].successes == 2

    # a step that fails: the library raises it, the CLI says it (exit 2) — the CLI has no path
    # of its own around the step
    from bakeoff import _pipeline

    def refuse(*a, **kw):
        raise bakeoff.RunError("marker: refused by the patched step")

    monkeypatch.setattr(_pipeline, "_begin", refuse)
    with pytest.raises(bakeoff.RunError, match="marker"):
        bakeoff.run(lu, db=tmp_path / "lib2.db", report=False)
    with pytest.raises(bakeoff.RunError, match="marker"):
        asyncio.run(bakeoff.arun(lu, db=tmp_path / "lib2.db", report=False))
    r = CliRunner().invoke(app, ["run", "-c", str(lu), "--db", str(tmp_path / "c2.db")])
    assert r.exit_code == 2 and "marker: refused by the patched step" in r.output
