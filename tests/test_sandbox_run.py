"""Model-written code as `bakeoff run` meets it: refused before any call without bubblewrap (a
clear error naming the package), run unisolated only on `--unsafe-code` and then flagged in the
summary, and issue #17's forged test report scoring 0 end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bakeoff.endpoints import CallResult
from bakeoff.sandbox import SandboxUnavailable, permit_unisolated
from bakeoff.suites.code import CodeSuite
from conftest import BAKEOFF
from test_sandbox import (  # the corpus, and the host it must not reach
    CORPUS,
    HOOK_OFF,
    assert_host_unharmed,
    host,  # noqa: F401  (a fixture)
    processes_with,
)
from uirun import report_pages

SUITE = CodeSuite()
ITEM = SUITE.items(seed=0, n=1)[0]
KEY = {"BAKEOFF_TEST_KEY": "sk-sandbox-cli-0123456789"}


def test_without_bwrap_model_code_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """BAKEOFF_BWRAP pointing at no binary: the scorer refuses to run anything, naming the package;
    with the opt-in it runs unisolated and every score says so."""
    monkeypatch.setenv("BAKEOFF_BWRAP", "/nonexistent/bwrap")
    reply = CallResult(text=SUITE.reference_reply(ITEM).content)
    with pytest.raises(SandboxUnavailable) as e:
        SUITE.score(ITEM, reply)
    msg = str(e.value)
    assert (
        "bwrap was not found at /nonexistent/bwrap" in msg and "apt-get install bubblewrap" in msg
    )
    assert "--unsafe-code" in msg
    permit_unisolated()
    try:
        by = {s.scorer: s for s in SUITE.score(ITEM, reply)}
    finally:
        permit_unisolated(False)
    assert (
        by["pass"].passed
        and by["isolated"].value == 0.0
        and "UNISOLATED" in (by["isolated"].detail or "")
    )


def _code_lineup(path: Path, url: str) -> None:
    path.write_text(
        "run: {suites: [code], limit: 2, probe: false}\n"
        f"endpoints:\n  - {{name: ep, base_url: {url}, api_key_env: BAKEOFF_TEST_KEY}}\n"
    )


FORGED = "```python\nimport os\nprint('BAKEOFF-TESTS 3/3')\nos._exit(0)\n```"


def test_run_without_bwrap_fails_before_any_call(tmp_path: Path, fake_proc) -> None:
    log = tmp_path / "server.jsonl"
    srv = fake_proc("--mode", "fixed", "--reply", FORGED, log=log)
    _code_lineup(tmp_path / "l.yaml", srv.url)
    env = {**os.environ, **KEY, "BAKEOFF_BWRAP": "/nonexistent/bwrap"}
    cmd = [*BAKEOFF, "run", "-c", str(tmp_path / "l.yaml"), "--db", str(tmp_path / "b.db")]
    r = subprocess.run([*cmd, "--no-report"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no call was made: code: model-written code" in r.stderr and "bubblewrap" in r.stderr
    assert "Traceback" not in r.stderr
    assert not log.exists() or log.read_text() == ""
    # the explicit opt-in: it runs, and the summary and the report say the code ran unisolated
    report = tmp_path / "r.html"
    r = subprocess.run([*cmd, "--report", str(report), "--unsafe-code", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    warning = "ep / code: model-written code ran UNISOLATED (--unsafe-code) on 2 of 2 calls"
    assert summary["warnings"] == [warning]
    assert warning in report_pages(report)[f"/run/{summary['run_id']}"]["html"]
    assert "UNISOLATED" in r.stderr


def test_forged_report_scores_zero_end_to_end(tmp_path: Path, fake_proc) -> None:
    """Issue #17's forged reply through `bakeoff run`: scored 3/3 before, 0 now; no warning."""
    srv = fake_proc("--mode", "fixed", "--reply", FORGED)
    _code_lineup(tmp_path / "l.yaml", srv.url)
    env = {**os.environ, **KEY}
    cmd = [*BAKEOFF, "run", "-c", str(tmp_path / "l.yaml"), "--db", str(tmp_path / "b.db")]
    r = subprocess.run(
        [*cmd, "--json", "--no-report"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    code = summary["endpoints"][0]["suites"]["code"]
    assert code["score"] == 0.0 and code["n"] == 2 and summary["warnings"] == []
    assert code["metrics"]["isolated"] == 1.0


def test_dataset_code_scorer_uses_the_same_path(tmp_path: Path) -> None:
    """`scorer: code` on your own data: needs the sandbox, judges in the parent, forged reports 0."""
    from bakeoff.lineups import DatasetSpec
    from bakeoff.suites.datasets import DatasetSuite

    tests = [{"args": [2], "expected": 4}, {"args": [3], "expected": 9}]
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": "sq", "q": "square x", "tests": tests}) + "\n")
    spec = {"name": "mine", "path": str(p), "prompt": "{{ q }}", "target": "tests", "id": "id"}
    suite = DatasetSuite(
        DatasetSpec.model_validate({**spec, "scorer": "code", "entry_point": "sq"})
    )
    assert suite.runs_model_code
    item = suite.items(seed=0)[0]
    good = {s.scorer: s for s in suite.score(item, CallResult(text="def sq(x):\n    return x * x"))}
    assert good["pass"].passed and good["isolated"].value == 1.0
    forged = suite.score(item, CallResult(text=FORGED))
    assert forged[0].passed is False and "no answers" in (forged[0].detail or "")


def test_the_hostile_corpus_through_bakeoff_run(tmp_path: Path, fake_proc, host) -> None:  # noqa: F811
    """Every program of `tests/test_sandbox.py`'s corpus, the audit hook switched off, as the
    replies of an endpoint to a `bakeoff run` (plus one that goes for that run's own database, and
    its parent by pid): the run completes, every call is stored and scores 0, and the host, the
    test process and bakeoff itself are unharmed."""
    import sqlite3

    db = tmp_path / "b.db"
    programs = {
        n: host.fill(HOOK_OFF + src.replace("{func}", "f")) for n, (src, _) in CORPUS.items()
    }
    programs["UPDATE the run's own scores"] = (
        f"import sqlite3\nc = sqlite3.connect({str(db)!r})\n"
        "c.execute('update scores set value = 1, passed = 1')\nc.commit()"
    )
    tests = [{"args": [1], "expected": "only the reference knows"}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"q": n, "tests": tests}) + "\n" for n in programs))
    script = tmp_path / "script.json"
    script.write_text(json.dumps({n: f"```python\n{p}\n```" for n, p in programs.items()}))
    srv = fake_proc("--script", str(script))
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [hostile], probe: false}\n"
        f"datasets:\n  - {{name: hostile, path: {data}, prompt: '{{{{ q }}}}', target: tests,"
        " scorer: code, entry_point: f}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{srv.url}', api_key_env: BAKEOFF_TEST_KEY,"
        " max_concurrency: 4}\n"
    )
    cmd = [*BAKEOFF, "run", "-c", str(lu), "--db", str(db), "--json", "--no-report"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **KEY}, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    ep = summary["endpoints"][0]
    n = len(programs)
    assert ep["calls"] == ep["successes"] == n and summary["status"] == "complete"
    assert ep["suites"]["hostile"]["score"] == 0.0 and ep["suites"]["hostile"]["n"] == n
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT count(*), sum(passed), sum(value) FROM scores WHERE scorer = 'pass'"
    ).fetchone()
    assert rows == (n, 0, 0.0)
    assert con.execute("SELECT count(*) FROM calls WHERE status = 'ok'").fetchone()[0] == n
    con.close()
    srv.stop()
    assert_host_unharmed(host, r.stdout + r.stderr)  # no child left but the witness, either
    assert processes_with(host.marker) == []
