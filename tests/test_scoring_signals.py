"""`bakeoff run` beside an endpoint whose replies are hostile to the scorers (the fake provider's
`score_*` modes): `"=" + 3000 spaces` (held the run for good, SIGTERM and Ctrl-C ignored), the same
at 200,000 characters, and a JSON string that a lineup's schema `pattern` backtracks on 2^40 times.

The run completes, every call stored, the last one with a `score_timeout` score; a SIGTERM or a
Ctrl-C (SIGINT) sent while the scorer is grinding ends the process (measured and printed: the
guarantee is 2 s, the test allows 10 on a loaded machine), the run `interrupted`, no scoring
process left, and `--resume` completes it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import BAKEOFF, wait_for

MODES = ["score_backtrack", "score_long", "score_regex_bomb"]


def _lineup(tmp_path, hostile: str, healthy: str) -> str:
    num = tmp_path / "num.jsonl"
    rows = [{"q": "[[fault:score_backtrack]]", "a": 1}, {"q": "[[fault:score_long]]", "a": 2}]
    rows.append({"q": "What is 2 + 2?", "a": 4})
    num.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = tmp_path / "schema.jsonl"
    bomb = {"q": "[[fault:score_regex_bomb]]", "s": {"type": "string", "pattern": "^(a+)+$"}}
    schema.write_text(json.dumps(bomb) + "\n")
    f = tmp_path / "l.yaml"
    f.write_text(
        "run: {suites: [num, schema], probe: false}\n"
        "reference: healthy\naudit: {enabled: false}\n"
        "datasets:\n"
        f"  - {{name: num, path: {num}, prompt: '{{{{ q }}}}', target: a, scorer: numeric}}\n"
        f"  - {{name: schema, path: {schema}, prompt: '{{{{ q }}}}', target: s,"
        " scorer: json_schema}\n"
        "endpoints:\n"
        f"  - {{name: hostile, base_url: '{hostile}', max_concurrency: 2,"
        " retry: {max_retries: 0}}\n"
        f"  - {{name: healthy, base_url: '{healthy}', max_concurrency: 2}}\n"
    )
    return str(f)


def _rows(db: str, sql: str, *args) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def _scores(db: str) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for ep, q, scorer in _rows(
        db,
        "SELECT c.endpoint, i.input_json, s.scorer FROM calls c JOIN items i"
        " ON i.run_id = c.run_id AND i.suite = c.suite AND i.item_id = c.item_id"
        " JOIN scores s ON s.call_id = c.id WHERE c.status = 'ok'",
    ):
        mode = next((m for m in MODES if m in q), "plain")
        out.setdefault((ep, mode), []).append(scorer)
    return out


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().split(") ")[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, IndexError, ValueError):
                pass
    return out


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True


def _run(lu: str, db: str, *extra: str, timeout_s: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("BAKEOFF_SCORE_TIMEOUT_S", None)
    if timeout_s is not None:
        env["BAKEOFF_SCORE_TIMEOUT_S"] = timeout_s
    cmd = [*BAKEOFF, "run", "-c", lu, "--db", db, "--json", "--no-report", *extra]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as at a terminal (as in test_cli, test_library): a suite started in the background
        # (`make test &`, or from a script) inherits an ignored SIGINT, which bakeoff rightly
        # keeps ignoring
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_a_run_beside_scorer_hostile_replies_completes(tmp_path, fake_proc):
    hostile, healthy = fake_proc(), fake_proc("--no-markers")
    lu, db = _lineup(tmp_path, hostile.url, healthy.url), str(tmp_path / "b.db")
    t0 = time.monotonic()
    p = _run(lu, db, "--no-cache", timeout_s="3")
    try:
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:  # the old scorer: hung for good, signals ignored
            p.kill()
            p.communicate()
    print(f"run took {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0, err[-3000:]
    assert json.loads(out)["status"] == "complete"
    calls = _rows(db, "SELECT endpoint, status, length(output_text) FROM calls")
    assert len(calls) == 8 and all(c[1] == "ok" for c in calls), calls
    assert {3001, 200_000} <= {c[2] for c in calls if c[0] == "hostile"}
    scores = _scores(db)
    assert scores[("hostile", "score_backtrack")] == ["numeric"]
    assert scores[("hostile", "score_long")] == ["numeric"]
    assert scores[("hostile", "score_regex_bomb")] == ["score_timeout"]
    assert scores[("healthy", "plain")] == ["numeric"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_scoring_ends_the_run_at_once_and_resume_completes(tmp_path, fake_proc, sig):
    hostile, healthy = fake_proc(), fake_proc("--no-markers")
    lu, db = _lineup(tmp_path, hostile.url, healthy.url), str(tmp_path / "b.db")
    p = _run(lu, db)  # the default deadline, 60 s: the bomb is still being scored
    try:
        # every call stored but the bomb's, which is being scored (the old code never got here:
        # the 3 KB reply held the loop; the signal is sent anyway, and had no effect)
        reached = True
        try:
            wait_for(lambda: len(_rows(db, "SELECT 1 FROM calls")) == 7, timeout=120)
        except AssertionError:
            reached = False
        workers = _children(p.pid)
        time.sleep(1.0)
        assert p.poll() is None
        t0 = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    print(f"{sig.name} mid-scoring: the process ended in {took:.2f} s")
    assert reached, "the calls other than the bomb's were not all stored"
    assert p.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "resume with: bakeoff run --resume" in err
    assert workers and all(_gone(w) for w in workers), workers
    (run_id, status), *_ = _rows(db, "SELECT id, status FROM runs")
    assert status == "interrupted"
    bomb = _rows(db, "SELECT status, error_class FROM calls WHERE output_text IS NULL")
    assert bomb == [("error", "cancelled")]
    r = _run(lu, db, "--resume", run_id, timeout_s="2")
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err[-3000:]
    assert json.loads(out)["status"] == "complete"
    assert _scores(db)[("hostile", "score_regex_bomb")] == ["score_timeout"]


def test_no_scoring_process_outlives_a_killed_run(tmp_path, fake_proc):
    """`kill -9` of bakeoff while its scoring process grinds on the bomb: that process dies too
    (PR_SET_PDEATHSIG), not left burning a core."""
    hostile, healthy = fake_proc(), fake_proc("--no-markers")
    lu, db = _lineup(tmp_path, hostile.url, healthy.url), str(tmp_path / "b.db")
    p = _run(lu, db)
    try:
        wait_for(lambda: len(_rows(db, "SELECT 1 FROM calls")) == 7, timeout=120)
        workers = _children(p.pid)
        assert workers
        p.kill()
    finally:
        p.kill()
        p.communicate()
    wait_for(lambda: all(_gone(w) for w in workers), timeout=10)
