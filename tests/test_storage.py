"""Storage faults: a full disk, read-only media, a locked database, and the UI reading while a run
writes. The full and read-only file systems are real: a tmpfs mounted in a user + mount namespace
(`unshare -rm`), filled or remounted read-only under a running bakeoff."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from bakeoff._pipeline import PREFLIGHT_PROMPT
from conftest import BAKEOFF, bakeoff, wait_for
from test_cli import script_for, write_lineup
from uirun import Server

KEY = "sk-storage-test-key"


def _userns() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs none $d && umount $d"],
        capture_output=True,
    )
    return r.returncode == 0


needs_userns = pytest.mark.skipif(
    not _userns(), reason="needs user + mount namespaces (unshare -rm) to make a real full disk"
)


def _in_namespace(tmp_path, body: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a bash script in a new user + mount namespace with $D a fresh mount point, $O the test's
    directory (on the real disk) and $BAKEOFF the command line."""
    d = tmp_path / "mnt"
    d.mkdir()
    script = (
        f"set -u\nD={shlex.quote(str(d))}\nO={shlex.quote(str(tmp_path))}\n"
        f"BAKEOFF={shlex.quote(' '.join(shlex.quote(x) for x in BAKEOFF))}\n"
        f"PY={shlex.quote(sys.executable)}\n{body}"
    )
    env = {**os.environ, "BAKEOFF_TEST_KEY": KEY}
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


CHECK = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
q = lambda sql: c.execute(sql).fetchone()[0]
print(q("PRAGMA integrity_check"), q("SELECT COUNT(*) FROM runs"), q("SELECT COUNT(*) FROM calls"))
"""

OK_PROMPTS = """
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
rows = con.execute("SELECT request_json FROM calls WHERE status = 'ok'").fetchall()
print(json.dumps([json.loads(r[0])["body"]["messages"][-1]["content"] for r in rows]))
"""


@needs_userns
def test_disk_full_mid_run_is_a_clear_error_and_resumes(tmp_path, fake_proc):
    n = 80
    script, items = script_for(tmp_path, n)
    log = tmp_path / "server.jsonl"
    srv = fake_proc("--script", str(script), log=log)
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, n)
    (tmp_path / "ok.py").write_text(OK_PROMPTS)
    (tmp_path / "check.py").write_text(CHECK)
    r = _in_namespace(
        tmp_path,
        """
mount -t tmpfs -o size=720k none "$D"  # the empty store alone is ~200 KB since m008
$BAKEOFF run -c "$O/l.yaml" --db "$D/b.db" --no-cache -q --no-report >"$O/out1" 2>"$O/err1"
echo $? >"$O/rc1"
mount -o remount,size=64m "$D"        # the user frees some space
$PY "$O/ok.py" "$D/b.db" >"$O/ok1"
$BAKEOFF run --resume last --db "$D/b.db" --no-cache -q --no-report --json >"$O/out2" 2>"$O/err2"
echo $? >"$O/rc2"
$PY "$O/check.py" "$D/b.db" >"$O/final"
""",
    )
    assert r.returncode == 0, r.stderr
    err1 = (tmp_path / "err1").read_text()
    assert (tmp_path / "rc1").read_text().strip() == "2", err1
    assert "disk is full" in err1 and "bakeoff run --resume" in err1
    assert "Traceback" not in err1 and KEY not in err1
    stored_before = json.loads((tmp_path / "ok1").read_text())
    assert 0 < len(stored_before) < n  # the disk filled up mid-run, what was stored is kept
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()
    summary = json.loads((tmp_path / "out2").read_text())
    assert summary["status"] == "complete"
    assert summary["endpoints"][0]["successes"] == n
    assert (tmp_path / "final").read_text().split()[0] == "ok"
    served = [json.loads(x)["prompt"] for x in log.read_text().splitlines()]
    served = [p for p in served if p != PREFLIGHT_PROMPT]  # the one-token preflight call
    for prompt in stored_before:  # no call stored before the fault was asked again
        assert served.count(prompt) == 1, prompt
    assert set(served) == {it.messages[0]["content"] for it in items}


@needs_userns
def test_read_only_media_can_be_read_and_refuses_writes_clearly(tmp_path, fake_proc):
    script, _ = script_for(tmp_path, 6)
    srv = fake_proc("--script", str(script))
    write_lineup(tmp_path / "l.yaml", srv.url, 6)
    (tmp_path / "check.py").write_text(CHECK)
    r = _in_namespace(
        tmp_path,
        """
mount -t tmpfs -o size=64m none "$D"
$BAKEOFF run -c "$O/l.yaml" --db "$D/b.db" -q --no-report >/dev/null 2>"$O/err0"; echo $? >"$O/rc0"
mount -o remount,ro "$D"
$BAKEOFF show last --db "$D/b.db" >"$O/show" 2>&1; echo $? >"$O/rc_show"
$BAKEOFF report last --db "$D/b.db" -o "$O/r.html" >/dev/null 2>"$O/err_report"; echo $? >"$O/rc_report"
RUN="$BAKEOFF run -c $O/l.yaml -q --no-report"
$RUN --db "$D/b.db" --new >/dev/null 2>"$O/err_run"; echo $? >"$O/rc_run"
$RUN --db "$D/other.db" >/dev/null 2>"$O/err_new"; echo $? >"$O/rc_new"
mount -o remount,rw "$D"
$PY "$O/check.py" "$D/b.db" >"$O/final"
""",
    )
    assert r.returncode == 0, r.stderr
    rd = lambda name: (tmp_path / name).read_text()  # noqa: E731
    assert rd("rc0").strip() == "0", rd("err0")
    # reading works from read-only media: the summary and the report
    assert rd("rc_show").strip() == "0" and "arith" in rd("show")
    assert rd("rc_report").strip() == "0", rd("err_report")
    report = rd("r.html")
    pages = re.search(r"(\d+) pages, offline", report)  # the report's pages, written in full
    assert pages and int(pages[1]) >= 3 and report.rstrip().endswith("</html>"), report[:2000]
    # writing says why, without a traceback
    for name in ("run", "new"):
        assert rd(f"rc_{name}").strip() == "2", rd(f"err_{name}")
        text = rd(f"err_{name}")
        assert "read-only" in text or "readonly" in text, text
        assert "Traceback" not in text
    assert rd("final").split() == ["ok", "1", "6"]  # nothing lost, nothing added


def test_locked_database_is_a_clear_error_then_works(tmp_path, fake_proc):
    script, _ = script_for(tmp_path, 4)
    srv = fake_proc("--script", str(script))
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, 4)
    db = tmp_path / "b.db"
    env = {"BAKEOFF_TEST_KEY": KEY, "BAKEOFF_DB_TIMEOUT": "1"}
    assert (
        bakeoff("run", "-c", str(f), "--db", str(db), "-q", "--no-report", env=env).returncode == 0
    )
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process is writing and does not let go
    try:
        t = time.monotonic()
        r = bakeoff("run", "-c", str(f), "--db", str(db), "--new", "-q", "--no-report", env=env)
        assert r.returncode == 2
        assert "locked" in r.stderr and "another process" in r.stderr
        assert "Traceback" not in r.stderr
        assert time.monotonic() - t < 30  # waited about BAKEOFF_DB_TIMEOUT, not forever
        # reading is never blocked by a writer (WAL)
        show = bakeoff("show", "last", "--db", str(db), env=env)
        assert show.returncode == 0 and "arith" in show.stdout
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = bakeoff("run", "-c", str(f), "--db", str(db), "--new", "-q", "--no-report", env=env)
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT status FROM runs ORDER BY rowid").fetchall() == [
        ("complete",),
        ("complete",),
    ]


def _one_round_s(tmp_path, fake_proc, script, env) -> float:
    """How long one round of the run's pages takes here and now, read from a finished run of a
    few calls: the slowest of three rounds."""
    warm = fake_proc("--script", str(script))
    f, db = tmp_path / "warm.yaml", tmp_path / "warm.db"
    write_lineup(f, warm.url, 4)
    r = bakeoff("run", "-c", str(f), "--db", str(db), "-q", "--no-report", env=env)
    assert r.returncode == 0, r.stderr
    run_id = sqlite3.connect(db).execute("SELECT id FROM runs").fetchone()[0]
    ui = Server(db)
    try:
        rounds = []
        for _ in range(3):
            t0 = time.monotonic()
            for page in _pages(run_id):
                assert ui.get(page)[0] == 200
            rounds.append(time.monotonic() - t0)
    finally:
        ui.stop()
    return max(rounds)


def _pages(run_id: str) -> list[str]:
    return [f"/run/{run_id}", f"/run/{run_id}/suite?name=arith", "/", f"/run/{run_id}/arena"]


def test_ui_reads_while_a_run_writes(tmp_path, fake_proc):
    n = 60
    script, _ = script_for(tmp_path, n)
    # the run must outlast several rounds of page reads, however loaded the machine: the fake's
    # delay is set from a round measured here (60 calls two at a time: 30 delays = 10 rounds)
    round_s = _one_round_s(tmp_path, fake_proc, script, {"BAKEOFF_TEST_KEY": KEY})
    ttft_ms = max(30, round(round_s * 1000 / 3))
    srv = fake_proc("--script", str(script), "--ttft-ms", str(ttft_ms), "--itl-ms", "10")
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, n)
    db = tmp_path / "b.db"
    env = {**os.environ, "BAKEOFF_TEST_KEY": KEY}
    p = subprocess.Popen(
        [*BAKEOFF, "run", "-c", str(f), "--db", str(db), "-q", "--no-report"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def has_calls() -> bool:
        try:
            return sqlite3.connect(db).execute("SELECT COUNT(*) FROM calls").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False

    wait_for(has_calls, timeout=60)
    ui = Server(db)
    try:
        run_id = sqlite3.connect(db).execute("SELECT id FROM runs").fetchone()[0]
        pages = _pages(run_id)
        polls, seen_counts = 0, set()
        while p.poll() is None:
            for page in pages:
                status, _, html = ui.get(page)
                assert status == 200, (page, html[:300])
            n_done = sqlite3.connect(db).execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            seen_counts.add(n_done)
            polls += 1
        assert p.wait() == 0, p.stderr.read() if p.stderr else ""
        # the pages were read while calls landed
        assert polls >= 3 and len(seen_counts) >= 2, (polls, seen_counts, ttft_ms)
        status, _, html = ui.get(f"/run/{run_id}")
        assert status == 200 and "complete" in html
    finally:
        ui.stop()
        if p.stderr:
            p.stderr.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok'").fetchone()[0] == n
