"""Never silently wrong (issue #32, items 1-3), driven as a user would: a run that did nothing is
not "complete" with its gates passed, a replayed answer is not today's measurement, and a failed
call is not a wrong answer."""

from __future__ import annotations

import json
import socket
import subprocess

from conftest import BAKEOFF, bakeoff


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DATASET = """
run: {suites: [mine], probe: false}
datasets:
  - {name: mine, path: d.jsonl, target: answer, scorer: exact}
endpoints:
  - {name: a, provider: fake, fake: {mode: fixed, reply: "4"}}
"""


def test_a_bad_dataset_row_leaves_no_run_and_the_fixed_one_runs_anew(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?"}\n')
    (tmp_path / "l.yaml").write_text(DATASET)
    db = str(tmp_path / "g.db")
    r = bakeoff("run", "-c", str(tmp_path / "l.yaml"), "--db", db, "--no-report", "-q")
    assert r.returncode == 2 and f"{data}:2" in r.stderr
    runs = bakeoff("runs", "--db", db, "--json")
    assert not runs.stdout.strip() or json.loads(runs.stdout) == []  # nothing left "running"
    data.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n')
    r = bakeoff(
        "run",
        "-c",
        str(tmp_path / "l.yaml"),
        "--db",
        db,
        "--no-report",
        "-q",
        "--json",
        "--fail-on",
        "score<0.9",
    )
    assert "resuming" not in r.stderr
    assert r.returncode == 100, r.stderr  # 2 calls made: one wrong, the gate fails
    assert json.loads(r.stdout)["endpoints"][0]["suites"]["mine"]["n"] == 2


def test_the_data_a_run_was_planned_from_is_part_of_its_identity(tmp_path):
    from bakeoff.lineups import load_lineup
    from bakeoff.runs import config_hash

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n')
    (tmp_path / "l.yaml").write_text(DATASET)
    before = config_hash(load_lineup(tmp_path / "l.yaml"))
    data.write_text('{"question": "2+2?", "answer": "5"}\n')
    assert config_hash(load_lineup(tmp_path / "l.yaml")) != before


def test_a_lineup_that_plans_no_call_is_refused(tmp_path):
    (tmp_path / "l.yaml").write_text(
        "run: {suites: [], probe: false}\nendpoints:\n  - {name: a, provider: fake}\n"
    )
    r = bakeoff("run", "-c", str(tmp_path / "l.yaml"), "--db", str(tmp_path / "g.db"), "-q")
    assert r.returncode == 2 and "plans no call" in r.stderr


SERVED = """
run: {{suites: [arith], limit: 5, probe: false}}
endpoints:
  - {{name: p, provider: openai, base_url: "http://127.0.0.1:{port}/v1", model: m}}
"""


class _serve:
    """`bakeoff fake-server` on a fixed port (the same base URL, so the same cache key), until
    the block ends."""

    def __init__(self, port: int, reply: str) -> None:
        self.proc = subprocess.Popen(
            [*BAKEOFF, "fake-server", "--port", str(port), "--mode", "fixed", "--reply", reply],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None and "http://" in self.proc.stdout.readline()

    def __enter__(self) -> _serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


def test_answers_are_live_by_default_and_a_replay_says_so(tmp_path):
    """The provider changed its answers between two runs of the same lineup: the second run
    measures the new answers (it used to replay the first run's from the cache and score them)."""
    port = _free_port()
    (tmp_path / "l.yaml").write_text(SERVED.format(port=port))
    db = str(tmp_path / "g.db")
    args = ("run", "-c", str(tmp_path / "l.yaml"), "--db", db, "--no-report", "-q", "--json")
    env = {"OPENAI_API_KEY": "sk-test-not-a-real-key-0000"}
    for reply, cached in (("first answer", 0), ("second answer", 0)):
        with _serve(port, reply):
            r = bakeoff(*args, "--new", env=env)
        assert r.returncode == 0, r.stderr
        e = json.loads(r.stdout)["endpoints"][0]
        assert e["cached"] == cached and e["successes"] == 5
    import sqlite3

    with sqlite3.connect(db) as con:
        runs = con.execute("SELECT id FROM runs ORDER BY created_at, rowid").fetchall()
        last = con.execute(
            "SELECT DISTINCT output_text FROM calls WHERE run_id = ?", (runs[-1][0],)
        ).fetchall()
    assert last == [("second answer",)]  # today's answers, not the first run's
    # asked for (development loops), a replay is one: counted as cached, said in the table
    with _serve(port, "third answer"):
        cached = [bakeoff(*args, "--new", "--cache", env=env) for _ in range(2)]
    assert [json.loads(r.stdout)["endpoints"][0]["cached"] for r in cached] == [0, 5]


FAILING = """
reference: ref
run: {{suites: [arith], limit: 20, probe: false}}
audit: {{enabled: false}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: echo}}}}
  - {{name: bad, provider: fake, fake: {{mode: echo, faults: {{{fault}: {p}}}, seed: 3}}}}
"""


def _run_failing(tmp_path, fault, p, *extra):
    f = tmp_path / f"{fault}-{p}.yaml"
    f.write_text(FAILING.format(fault=fault, p=p))
    db = str(tmp_path / f"{fault}-{p}.db")
    return bakeoff("run", "-c", str(f), "--db", db, "--no-report", "-q", "--json", *extra)


def test_an_endpoint_whose_every_call_failed_has_no_score_and_the_run_fails(tmp_path):
    r = _run_failing(tmp_path, "credits", 1.0)
    assert r.returncode == 3, r.stderr
    assert "bad: arith: no score: 20/20 failed — HTTP 402" in r.stderr
    assert "nsufficient credits" in r.stderr  # the provider's own words
    bad = next(e for e in json.loads(r.stdout)["endpoints"] if e["name"] == "bad")
    st = bad["suites"]["arith"]
    assert st["score"] is None and st["answered"] == 0
    vs = st.get("vs_reference") or {}
    assert vs.get("p_value") is None and not vs.get("significant")  # no significance from failures
    assert vs.get("left_out_failed") == 20
    # accepted on request; a score gate never passes without a score
    assert _run_failing(tmp_path, "credits", 1.0, "--allow-errors").returncode == 0
    g = _run_failing(tmp_path, "auth", 1.0, "--allow-errors", "--fail-on", "score<0.5")
    assert g.returncode == 100 and "n/a" in g.stderr


def test_a_few_failures_are_counted_beside_the_score_not_as_wrong_answers(tmp_path):
    r = _run_failing(tmp_path, "auth", 0.12)
    assert r.returncode == 0, r.stderr
    out = {e["name"]: e["suites"]["arith"] for e in json.loads(r.stdout)["endpoints"]}
    bad, ref = out["bad"], out["ref"]
    assert 0 < bad["errors"] < 20 and bad["answered"] == 20 - bad["errors"]
    # echo: the same answers as the reference wherever it answered
    assert bad["score"] == ref["score"] or bad["correct"] / bad["answered"] == bad["score"]
    assert bad["score_failures_as_wrong"] < bad["score"] or bad["score"] == 0
    assert bad["vs_reference"]["left_out_failed"] == bad["errors"]
    assert bad["vs_reference"]["delta"] == 0
    assert bad["score_common"] == ref["score_common"]


def test_preflight_makes_one_real_call_a_listing_alone_proves_little(tmp_path, fake_proc):
    """`/models` answers, but every chat call is refused (HTTP 401) or unpaid (402): the run
    stops at preflight, before a database or a call of the run, naming the cause."""
    for fault, says in (("auth", "HTTP 401"), ("credits", "HTTP 402")):
        srv = fake_proc("--fault", f"{fault}=1")
        f = tmp_path / f"{fault}.yaml"
        f.write_text(SERVED.format(port=srv.url.rsplit(":", 1)[1].split("/")[0]))
        db = tmp_path / f"{fault}.db"
        r = bakeoff("run", "-c", str(f), "--db", str(db), "-q", env={"OPENAI_API_KEY": "k" * 20})
        assert r.returncode == 2, r.stderr
        assert "a one-token call" in r.stderr and says in r.stderr
        assert not db.exists()
