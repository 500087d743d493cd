"""The CLI as a user runs it: real subprocesses, a real fake provider process, a real database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import orjson
import pytest

from bakeoff._pipeline import PREFLIGHT_PROMPT
from bakeoff.suites import Arith
from conftest import BAKEOFF, bakeoff, wait_for
from uirun import report_pages

KEY = "sk-test-SECRETVALUE-0123456789abcdefXYZ"


def write_lineup(path, url: str, n: int, extra: str = "") -> None:
    path.write_text(
        f"""
reference: ep
defaults: {{temperature: 0, max_tokens: 16}}
run: {{suites: [arith], limit: {n}, probe: false}}  # the server log must hold suite calls only
endpoints:
  - name: ep
    base_url: {url}
    api_key_env: BAKEOFF_TEST_KEY
    max_concurrency: 2
{extra}
"""
    )


def script_for(tmp_path, n: int):
    """Correct answers for even items, wrong for odd ones: a known score."""
    items = Arith().items(seed=0, n=n)
    script = {
        it.messages[0]["content"]: str(it.target if i % 2 == 0 else it.target + 1)
        for i, it in enumerate(items)
    }
    f = tmp_path / "script.json"
    f.write_bytes(orjson.dumps(script))
    return f, items


def test_help_lists_the_commands():
    r = bakeoff("--help")
    assert r.returncode == 0
    for cmd in ("run", "runs", "show", "export", "suites", "fake-server"):
        assert cmd in r.stdout


def test_bad_lineup_names_file_line_field(tmp_path):
    f = tmp_path / "l.yaml"
    f.write_text("endpoints:\n  - name: a\n    base_url: http://x/v1\n    max_concurrency: -3\n")
    r = bakeoff("run", "-c", str(f), "--db", str(tmp_path / "b.db"))
    assert r.returncode == 2
    assert f"{f}:4: endpoints[0].max_concurrency" in r.stderr


def test_messages_are_never_elided_at_any_width(tmp_path):
    """A long path and a 40-column console that is not a terminal: every message comes out whole,
    on one line (a fresh clone in a deep folder once saw "disk is full" broken off its message),
    and a table folds its cells instead of ending them in an ellipsis."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name-for-this-test"] * 4)
    deep.mkdir(parents=True)
    assert len(str(deep)) > 120
    env = {"COLUMNS": "40"}
    db = deep / "b.db"
    r = bakeoff("show", "nope", "--db", str(db), env=env)
    assert r.returncode == 2
    assert f"no database at {db}: `bakeoff run` makes one" in r.stderr.splitlines()[0], r.stderr
    from bakeoff.store import Store

    Store(db).close()
    r = bakeoff("show", "nope", "--db", str(db), env=env)
    assert r.returncode == 2
    assert f"no run 'nope' in {db} (see `bakeoff runs`)" in r.stderr.splitlines()[0], r.stderr
    bad = deep / "l.yaml"
    bad.write_text(
        "endpoints:\n  - name: x\n    base_url: http://h/v1\n    model: m\n"
        "    max_concurrency: lots\n"
    )
    r = bakeoff("run", "-c", str(bad), "--db", str(db), env=env)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {bad}:5: endpoints[0].max_concurrency: Input should be"), (
        r.stderr
    )
    r = bakeoff("runs", "--db", str(db), env=env)
    assert r.returncode == 0 and "…" not in r.stdout
    assert str(db) in "".join(x.strip() for x in r.stdout.splitlines()), r.stdout


def test_missing_env_var_stops_before_any_call(tmp_path, fake_proc):
    log = tmp_path / "server.jsonl"
    srv = fake_proc(log=log)
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, 3)
    env = {k: v for k, v in os.environ.items() if k != "BAKEOFF_TEST_KEY"}
    r = subprocess.run(
        [*BAKEOFF, "run", "-c", str(f), "--db", str(tmp_path / "b.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "BAKEOFF_TEST_KEY is not set" in r.stderr and "no call was made" in r.stderr
    assert not log.exists() or log.read_text() == ""


def test_run_json_show_export(tmp_path, fake_proc):
    n = 10
    script, _ = script_for(tmp_path, n)
    srv = fake_proc("--script", str(script), "--upstream", "Acme")
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, n)
    db = str(tmp_path / "b.db")
    r = bakeoff("run", "-c", str(f), "--db", db, "--json", env={"BAKEOFF_TEST_KEY": KEY})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    ep = summary["endpoints"][0]
    assert ep["calls"] == n and ep["successes"] == n
    assert ep["suites"]["arith"]["correct"] == 5 and ep["suites"]["arith"]["score"] == 0.5
    assert ep["upstreams"] == {"Acme": n}
    assert "arith score" in r.stderr  # the table still shows, on stderr

    shown = json.loads(bakeoff("show", summary["run_id"][:12], "--db", db, "--json").stdout)
    assert shown == summary

    runs = bakeoff("runs", "--db", db).stdout
    assert summary["run_id"] in runs and "complete" in runs

    lines = bakeoff("export", "last", "--db", db, "-f", "jsonl").stdout.splitlines()
    every = [json.loads(x) for x in lines]  # the one-token preflight call is on it too
    assert [r["purpose"] for r in every].count("preflight") == 1
    rows = [r for r in every if r["purpose"] == "suite"]
    assert len(rows) == n and sum(r["score"] for r in rows) == 5  # the primary score
    assert all(json.loads(r["scores_json"])["numeric"] == r["score"] for r in rows)
    csv_out = tmp_path / "calls.csv"
    csv_args = ("export", "last", "--db", db, "-f", "csv", "-o", str(csv_out), "--purpose", "suite")
    assert bakeoff(*csv_args).returncode == 0
    import csv as csv_mod

    with csv_out.open() as fh:
        assert len(list(csv_mod.DictReader(fh))) == n  # one row per call (texts quoted)
    pq_out = tmp_path / "calls.parquet"
    r = bakeoff(
        "export", "last", "--db", db, "-f", "parquet", "-o", str(pq_out), "--purpose", "suite"
    )
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(pq_out).num_rows == n
    assert bakeoff("show", "nope", "--db", db).returncode == 2


def _ok_prompts(db: str, run_id: str | None = None) -> dict[str, str]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return {}
    try:
        rows = con.execute(
            "SELECT c.request_json, c.run_id FROM calls c WHERE c.status = 'ok'"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    out = {}
    for req, rid in rows:
        if run_id is None or rid == run_id:
            out[json.loads(req)["body"]["messages"][-1]["content"]] = rid
    return out


def test_kill_9_then_resume_repeats_no_finished_call(tmp_path, fake_proc):
    n = 36
    script, items = script_for(tmp_path, n)
    log = tmp_path / "server.jsonl"
    srv = fake_proc("--script", str(script), "--itl-ms", "15", "--ttft-ms", "20", log=log)
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, n)
    db = str(tmp_path / "b.db")
    env = {**os.environ, "BAKEOFF_TEST_KEY": KEY}
    cmd = [*BAKEOFF, "run", "-c", str(f), "--db", db, "--no-cache", "-q"]

    def served() -> list[str]:  # the run's calls (not the one-token preflight call)
        prompts = [json.loads(x)["prompt"] for x in log.read_text().splitlines()]
        return [p for p in prompts if p != PREFLIGHT_PROMPT]

    # (prompts finished before a kill, how many requests the server had seen by then)
    checkpoints: list[tuple[set[str], int]] = []
    for threshold in (6, 18):  # two kills: after the first, re-running the same command resumes
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda t=threshold: len(_ok_prompts(db)) >= t, timeout=60, interval=0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        finished = set(_ok_prompts(db))
        assert len(finished) < n, "the run finished before it could be killed"
        checkpoints.append((finished, len(served())))

    runs = sqlite3.connect(db).execute("SELECT id, status FROM runs").fetchall()
    assert len(runs) == 1 and runs[0][1] == "running"  # a dead process left it 'running'
    run_id = runs[0][0]
    r = bakeoff("run", "--resume", run_id, "--db", db, "--no-cache", "--json", env=env)
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout)

    log_after = served()
    for finished, seen in checkpoints:
        later = set(log_after[seen:])
        assert not finished & later, f"finished calls repeated: {finished & later}"
    assert set(log_after) == {it.messages[0]["content"] for it in items}

    # the same scores as an uninterrupted run
    db2 = str(tmp_path / "clean.db")
    r2 = bakeoff("run", "-c", str(f), "--db", db2, "--no-cache", "--json", env=env)
    clean = json.loads(r2.stdout)
    assert resumed["endpoints"][0]["suites"] == clean["endpoints"][0]["suites"]
    assert resumed["endpoints"][0]["calls"] == n == resumed["endpoints"][0]["successes"]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_ctrl_c_marks_the_run_interrupted(tmp_path, fake_proc):
    n = 30
    # 0.4 s before each reply, 2 at a time: ~6 s of calls, so Ctrl-C after the third lands
    # mid-run even on a loaded machine (the replies are 1-2 tokens: a per-token delay adds little)
    srv = fake_proc("--ttft-ms", "400")
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, n)
    db = str(tmp_path / "b.db")
    env = {**os.environ, "BAKEOFF_TEST_KEY": KEY}
    p = subprocess.Popen(
        [*BAKEOFF, "run", "-c", str(f), "--db", db, "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as at a terminal: a test suite started in the background (`make test &`) inherits an
        # ignored SIGINT, and the run would rightly ignore the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: len(_ok_prompts(db)) >= 3, timeout=60, interval=0.01)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=30)
    assert p.returncode == 130
    assert "bakeoff run --resume" in stderr
    con = sqlite3.connect(db)
    status = con.execute("SELECT status FROM runs").fetchone()[0]
    assert status == "interrupted"
    classes = {r[0] for r in con.execute("SELECT error_class FROM calls WHERE status='error'")}
    assert classes <= {"cancelled"}
    # re-running the same command resumes it and completes
    r = bakeoff("run", "-c", str(f), "--db", db, "--json", env=env)
    assert r.returncode == 0 and "resuming unfinished run" in r.stderr
    assert json.loads(r.stdout)["endpoints"][0]["successes"] == n


@pytest.mark.parametrize("debug", [False, True])
def test_api_key_never_stored_logged_or_exported(tmp_path, fake_proc, debug):
    log = tmp_path / "server.jsonl"
    srv = fake_proc("--fault", "server_error=0.3", "--fault", "auth=0.1", log=log)
    f = tmp_path / "l.yaml"
    write_lineup(f, srv.url, 8, extra="    retry: {max_retries: 1, backoff_base_s: 0.001}")
    db = tmp_path / "b.db"
    env = {"BAKEOFF_TEST_KEY": KEY}
    args = ["--debug"] if debug else []
    r = bakeoff(*args, "run", "-c", str(f), "--db", str(db), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert all(json.loads(x)["auth"] for x in log.read_text().splitlines())  # the key was sent
    # preflight names the variable and the host it goes to, never the value
    host = srv.url.split("//")[1].split("/")[0]
    assert f"key: endpoint 'ep' sends BAKEOFF_TEST_KEY to {host}" in r.stderr
    # the stored lineup is the file's, not scrubbed (it holds no key by construction)
    stored = sqlite3.connect(db).execute("SELECT lineup_json FROM runs").fetchone()[0]
    assert json.loads(stored)["endpoints"][0]["api_key_env"] == "BAKEOFF_TEST_KEY"
    outputs = [r.stdout, r.stderr]
    for fmt in ("jsonl", "csv", "parquet"):
        o = tmp_path / f"x.{fmt}"
        e = bakeoff("export", "last", "--db", str(db), "-f", fmt, "-o", str(o))
        outputs += [e.stdout, e.stderr]
        assert KEY.encode() not in o.read_bytes()
        assert b"SECRETVALUE" not in o.read_bytes()
    outputs.append(bakeoff("show", "last", "--db", str(db), "--json").stdout)
    for text in outputs:
        assert KEY not in text and "SECRETVALUE" not in text
    for path in tmp_path.iterdir():
        if path.name.startswith("b.db"):
            assert b"SECRETVALUE" not in path.read_bytes(), path
    # the HTML report `bakeoff run` wrote, and one written on demand: every page, decoded
    reports = [*(tmp_path / "bakeoff-reports").glob("*.html"), tmp_path / "r.html"]
    rep = bakeoff("report", "last", "--db", str(db), "-o", str(reports[-1]))
    assert rep.returncode == 0, rep.stderr
    assert len(reports) == 2
    for path in reports:
        pages = report_pages(path)
        assert len(pages) > 8
        for page in pages.values():
            assert KEY not in page["html"] and "SECRETVALUE" not in page["html"]
        assert KEY not in path.read_text()
    # the stored request shows that an Authorization header was sent, redacted
    req = sqlite3.connect(db).execute("SELECT request_json FROM calls LIMIT 1").fetchone()[0]
    assert json.loads(req)["headers"]["Authorization"] == "***"


def test_fake_server_command_serves_models(fake_proc):
    import urllib.request

    srv = fake_proc("--model", "m1")
    with urllib.request.urlopen(srv.url + "/models", timeout=5) as resp:
        assert json.loads(resp.read())["data"][0]["id"] == "m1"
    time.sleep(0)


def test_read_only_commands_and_refused_runs_leave_no_database(tmp_path):
    db = tmp_path / "none.db"
    for args in (["show", "last"], ["runs"], ["export", "last"], ["report", "last"]):
        r = bakeoff(*args, "--db", str(db))
        assert r.returncode == 2, (args, r.stderr)
        assert "no database at" in r.stderr and not db.exists(), args
    r = bakeoff("audit", "--rerun", "last", "--db", str(db))
    assert r.returncode == 2 and not db.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - {name: a, provider: fake, max_concurrency: 0}\n")
    r = bakeoff("run", "-c", str(bad), "--db", str(db))
    assert r.returncode == 2 and "bad.yaml:2" in r.stderr and not db.exists()
    unset = tmp_path / "unset.yaml"
    unset.write_text(
        "run: {suites: [arith]}\nendpoints:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1',"
        " model: m, api_key_env: BAKEOFF_NO_SUCH_KEY}\n"
    )
    r = bakeoff("run", "-c", str(unset), "--db", str(db))
    assert r.returncode == 2 and "BAKEOFF_NO_SUCH_KEY is not set" in r.stderr and not db.exists()


GATED = """
reference: ref
run: {suites: [arith], limit: 3, probe: false}
audit: {budget: 10, batch: 10}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
"""


def test_fail_on_gates_exit_100_with_the_reason(tmp_path):
    """CI gates: `--fail-on different` fails (exit 100) when an endpoint is "different", passes
    on twins; score and error-rate rules; a stored run gated again by `bakeoff show`."""
    twins = tmp_path / "twins.yaml"
    twins.write_text(GATED)
    db = str(tmp_path / "b.db")
    r = bakeoff("run", "-c", str(twins), "--db", db, "--no-report", "--fail-on", "different")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gates passed: different" in r.stderr
    # echo answers arithmetic wrong, never errs: a score gate fails, an error-rate gate passes
    r = bakeoff("show", "last", "--db", db, "--fail-on", "score<0.5", "--fail-on", "error-rate>0")
    assert r.returncode == 100 and "gate failed: score<0.5: twin scored arith 0.000" in r.stderr
    assert "error-rate>0" not in r.stderr.split("gate failed")[-1]
    other = tmp_path / "other.yaml"
    other.write_text(
        GATED + '  - {name: other, provider: fake, fake: {mode: fixed, reply: "No idea at all."}}\n'
    )
    r = bakeoff("run", "-c", str(other), "--db", db, "--no-report", "--fail-on", "different")
    assert r.returncode == 100, r.stderr[-2000:]
    failed = [x for x in r.stderr.splitlines() if x.startswith("gate failed")]
    assert failed == [x for x in failed if "other is different" in x] and len(failed) == 1
    r = bakeoff("show", "last", "--db", db, "--fail-on", "twin:different")
    assert r.returncode == 0
    r = bakeoff("run", "-c", str(other), "--db", db, "--fail-on", "score>3")
    assert r.returncode == 2 and "expected different, not-same" in r.stderr


def test_preflight_names_a_dead_host_a_missing_v1_and_a_refused_key(tmp_path, fake_proc):
    """Before any call: each endpoint's /models, one clear line each, exit 2, no call made (the
    fake server's log stays empty) and no database left behind."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "bad key"}}')

        def log_message(self, *a):
            pass

    refusing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    log = tmp_path / "fake.jsonl"
    srv = fake_proc(log=log)
    no_v1 = srv.url.removesuffix("/v1")
    assert no_v1 != srv.url
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [arith], limit: 2, probe: false}\nendpoints:\n"
        "  - {name: dead, base_url: 'http://127.0.0.1:9/v1', model: m}\n"
        f"  - {{name: nov1, base_url: '{no_v1}', model: fake-model}}\n"
        f"  - {{name: badkey, base_url: 'http://127.0.0.1:{refusing.server_port}/v1', model: m,"
        " api_key_env: BAKEOFF_TEST_KEY}\n"
        f"  - {{name: fine, base_url: '{srv.url}', model: other-model}}\n"
    )
    db = tmp_path / "b.db"
    try:
        r = bakeoff("run", "-c", str(lu), "--db", str(db), env={"BAKEOFF_TEST_KEY": KEY})
    finally:
        refusing.shutdown()
        refusing.server_close()
    assert r.returncode == 2, r.stderr
    err = r.stderr
    assert "endpoint 'dead': cannot reach http://127.0.0.1:9/v1" in err
    assert "endpoint 'nov1'" in err and "answered 404" in err and "/v1" in err
    assert "endpoint 'badkey'" in err and "refused the key in BAKEOFF_TEST_KEY (HTTP 401)" in err
    assert "'fine'" not in err.split("no call was made")[1]  # only a warning: not listed
    assert "warning: endpoint 'fine': model 'other-model' is not listed" in err
    assert KEY not in err and not db.exists()
    assert not log.exists() or all('"/v1/chat' not in x for x in log.read_text().splitlines())
    dead = tmp_path / "dead.yaml"
    dead.write_text(
        "run: {suites: [arith], limit: 2, probe: false}\nendpoints:\n"
        "  - {name: dead, base_url: 'http://127.0.0.1:9/v1', model: m, retry: {max_retries: 0}}\n"
    )
    r = bakeoff("run", "-c", str(dead), "--db", str(db), "--no-preflight", "--no-report", "-q")
    # no preflight: the calls fail one by one instead, and the run says it measured nothing
    assert r.returncode == 3 and db.exists() and "dead: arith: no score: 2/2 failed" in r.stderr


def test_compare_prints_paired_deltas_and_gates_a_regression(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"q": f"Say {i}.", "a": str(i)}) + "\n" for i in range(12)))
    script = tmp_path / "right.json"
    script.write_text(json.dumps({f"Say {i}.": str(i) for i in range(12)}))
    db = str(tmp_path / "b.db")

    def lineup(fake: str) -> str:
        f = tmp_path / f"{len(fake)}.yaml"
        f.write_text(
            "run: {suites: [qa], probe: false}\n"
            f"datasets:\n  - {{name: qa, path: {qa}, prompt: '{{{{ q }}}}', target: a,"
            " scorer: exact}\n"
            f"endpoints:\n  - {{name: ep, provider: fake, fake: {fake}}}\n"
        )
        return str(f)

    ids = []
    for fake in (f"{{mode: script, script_file: {script}}}", "{mode: fixed, reply: nope}"):
        r = bakeoff("run", "-c", lineup(fake), "--db", db, "--json", "--no-report", "-q")
        assert r.returncode == 0, r.stderr[-2000:]
        ids.append(json.loads(r.stdout)["run_id"])
    r = bakeoff("compare", ids[0], ids[1], "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    assert (row["endpoint"], row["suite"], row["delta"], row["paired"]) == ("ep", "qa", -1.0, 12)
    assert row["significant"] and row["p_holm"] < 0.001  # McNemar exact: 2 / 2**12
    r = bakeoff("compare", ids[0], ids[1], "--db", db, "--fail-on-regression")
    assert r.returncode == 100 and "gate failed: regression: ep / qa -1.000" in r.stderr
    assert "-1.000" in r.stdout
    r = bakeoff("compare", ids[1], ids[0], "--db", db, "--fail-on-regression")
    assert r.returncode == 0  # an improvement is no regression


def test_stop_when_stops_a_suite_early_and_the_table_says_so(tmp_path):
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "run: {suites: [arith], limit: 200, probe: false, stop_when: {ci_width: 0.4, min_items: 20}}\n"
        "audit: {enabled: false}\n"
        "endpoints:\n  - {name: f, provider: fake, fake: {mode: fixed, reply: '7'}}\n"
    )
    db = str(tmp_path / "s.db")
    r = bakeoff("run", "-c", str(lineup), "--db", db, "--no-report", "--json", "--cache")
    assert r.returncode == 0, r.stderr[-2000:]
    arith = json.loads(r.stdout)["endpoints"][0]["suites"]["arith"]
    assert arith["stopped_early"] is True and arith["items_planned"] == 200
    assert 20 <= arith["n_items"] < 200 and arith["n"] == arith["n_items"]
    assert arith["ci_method"] == "confidence_sequence"
    assert arith["ci95"][1] - arith["ci95"][0] < 0.4
    assert "stopped early" in r.stderr  # the table (on stderr with --json)
    # in-flight calls finish after the stop (max_concurrency 4): at most 3 more than needed
    again = bakeoff("run", "-c", str(lineup), "--db", db, "--no-report", "--json", "--cache")
    e = json.loads(again.stdout)["endpoints"][0]  # a new run, every call from the cache
    assert e["cached"] == e["calls"] and abs(e["suites"]["arith"]["n"] - arith["n"]) <= 3
