"""The team store: every command on a real PostgreSQL server (tests/pgserver.py), concurrent runs
from several processes into one database, the UI reading while they write, and a URL's password
never shown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest

from bakeoff.runs import call_id, create_run, lineup_of_run
from bakeoff.store import MIGRATIONS, Store, redact
from conftest import BAKEOFF, bakeoff
from uirun import Server, crawl, make_run

PASSWORD = "hunter2-TEAMSTORE-pw"

EVERY_COMMAND = """
reference: ref
defaults: {temperature: 0, max_tokens: 32}
run: {suites: [arith], limit: 6}
audit: {regimes: [greedy], budget: 10, batch: 5}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
  - {name: terse, provider: fake, fake: {mode: fixed, reply: "The answer is 7."}}
  - {name: judge, provider: fake, fake: {mode: fixed, reply: "A"}}
"""


def test_redact_hides_the_password_of_a_url():
    assert redact("postgresql://u:s3cr3t@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgres://u@h/db?password=s3cr3t&sslmode=require") == (
        "postgres://u@h/db?password=***&sslmode=require"
    )
    assert redact("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert redact("runs/bakeoff.db") == "runs/bakeoff.db"


def test_every_command_on_postgres_never_shows_the_password(pg_server, tmp_path):
    url = pg_server.url(pg_server.new_database(), password=PASSWORD)
    lineup = tmp_path / "l.yaml"
    lineup.write_text(EVERY_COMMAND)
    said: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess:
        r = bakeoff(*args, "--db", url, cwd=tmp_path)
        said.extend((r.stdout, r.stderr))
        return r

    r = cli("run", "-c", str(lineup), "--json", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    first = json.loads(r.stdout)
    rid = first["run_id"]
    # a server database has no folder: the report goes to the working directory
    assert (tmp_path / "bakeoff-reports" / f"{rid}.html").is_file()
    calls = {e["name"]: (e["calls"], e["successes"]) for e in first["endpoints"]}
    assert {k: v[0] for k, v in calls.items()} == {"ref": 6, "twin": 6, "terse": 6, "judge": 6}
    verdicts = {e["name"]: e["fidelity"]["verdict"] for e in first["endpoints"]}
    assert verdicts["terse"] == verdicts["judge"] == "different"

    r = cli("run", "-c", str(lineup), "--new", "--json", "-q", "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    second = json.loads(r.stdout)["run_id"]

    r = cli("runs")
    assert r.returncode == 0 and rid in r.stdout and second in r.stdout
    assert "postgresql://bakeoff:***@127.0.0.1" in r.stdout
    r = cli("show", rid, "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)["endpoints"]
    assert {e["name"]: (e["calls"], e["successes"]) for e in shown} == calls
    r = cli("compare", rid, second, "--json")
    assert r.returncode == 0, r.stderr
    assert {(x["endpoint"], x["delta"]) for x in json.loads(r.stdout)["rows"]} == {
        ("ref", 0.0),
        ("twin", 0.0),
        ("terse", 0.0),
        ("judge", 0.0),
    }
    r = cli("export", rid, "-f", "jsonl", "-o", str(tmp_path / "calls.jsonl"))
    assert r.returncode == 0, r.stderr
    exported = (tmp_path / "calls.jsonl").read_text().splitlines()
    store = Store(url)
    assert sorted(json.loads(x)["id"] for x in exported) == sorted(
        c["id"] for c in store.calls(rid)
    )
    store.close()
    r = cli("report", rid, "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0 and (tmp_path / "r.html").stat().st_size > 10_000, r.stderr
    r = cli("audit", "--rerun", rid, "--json")
    assert r.returncode == 0, r.stderr
    rerun = json.loads(r.stdout)["verdicts"]
    assert {k: v["verdict"] for k, v in rerun.items()} == {
        k: v for k, v in verdicts.items() if k != "ref"
    }
    r = cli("arena", rid, "--judge", "judge", "--pairs", "2")
    assert r.returncode == 0 and "2 judge votes stored" in r.stderr, r.stderr
    r = cli("run", "--resume", rid, "-q", "--no-report")
    assert r.returncode == 0 and "already complete" in r.stderr, r.stderr

    # a database that is not there: a clear error, still without the password
    r = bakeoff("runs", "--db", url.rsplit("/", 1)[0] + "/nonesuch")
    said.extend((r.stdout, r.stderr))
    assert r.returncode == 2 and "does not exist" in r.stderr and "***" in r.stderr
    assert not [s for s in said if PASSWORD in s]
    store = Store(url)  # nor is it stored: the URL is nowhere in the database
    dump = json.dumps([list(r) for r in store.db.execute("SELECT * FROM runs")])
    store.close()
    assert PASSWORD not in dump and "hunter2" not in dump


FAKE = "provider: fake, max_concurrency: 3, retry: {max_retries: 0}, fake: {mode: echo, ttft_ms: 5"


def _lineup(tmp_path: Path, name: str, endpoints: list[str], limit: int, spec: str) -> str:
    eps = "\n".join(f"  - {{name: {e}, {spec}}}" for e in endpoints)
    f = tmp_path / f"{name}.yaml"
    f.write_text(
        "defaults: {temperature: 0, max_tokens: 16}\n"
        f"run: {{suites: [arith, instructions], limit: {limit}, probe: false}}\n"
        f"endpoints:\n{eps}\n"
    )
    return str(f)


def _recount(store: Store, run_id: str) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for c in store.calls(run_id):
        d = out.setdefault(c["endpoint"], {"calls": 0, "successes": 0, "errors": Counter()})
        d["calls"] += 1  # type: ignore[operator]
        if c["status"] == "ok":
            d["successes"] += 1  # type: ignore[operator]
        else:
            d["errors"][c["error_class"]] += 1  # type: ignore[index]
    return out


def _planned(store: Store, run_id: str) -> set[str]:
    lineup = lineup_of_run(store, run_id)
    items = store.item_keys(run_id)
    return {
        call_id(run_id, ep.name, it["suite"], it["item_id"], r)
        for ep in lineup.endpoints
        for it in items
        for r in range(lineup.run.repeats)
    }


def test_four_concurrent_runs_store_every_call_once_and_the_ui_reads_meanwhile(
    pg_url, tmp_path, fake_proc
):
    """Four `bakeoff run` processes into one database: two on overlapping lineups of their own (one
    with faults), and two resuming one stored run together — the same call ids, raced (its
    endpoints are a `bakeoff fake-server`, whose log shows calls made by both)."""
    log = tmp_path / "served.jsonl"
    srv = fake_proc("--ttft-ms", "250", log=log)
    shared = Store(pg_url)
    spec = f"base_url: {srv.url}, max_concurrency: 2"
    resumed = create_run(shared, _parse(_lineup(tmp_path, "shared", ["a", "b", "c"], 10, spec)))
    shared.close()
    faulty = FAKE + ", faults: {server_error: 0.4}, seed: 3}"
    commands = [
        ["run", "-c", _lineup(tmp_path, "ab", ["a", "b"], 8, faulty)],
        ["run", "-c", _lineup(tmp_path, "bc", ["b", "c"], 6, FAKE + "}")],
        ["run", "--resume", resumed],
        ["run", "--resume", resumed],
    ]
    ui = Server(pg_url)
    procs = [
        subprocess.Popen(
            [*BAKEOFF, *cmd, "--db", pg_url, "--json", "-q", "--no-report", "--no-cache"]
            + (["--allow-errors"] if cmd[0] == "run" else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for cmd in commands
    ]
    pages = 0
    while any(p.poll() is None for p in procs):  # the UI answers while the runs write
        status, _, html = ui.get("/")
        assert status == 200 and resumed in html
        pages += 1
        time.sleep(0.2)
    outs = [p.communicate() for p in procs]
    ui.stop()
    assert pages > 3
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outs]
    assert summaries[2]["run_id"] == summaries[3]["run_id"] == resumed

    store = Store(pg_url)
    run_ids = {s["run_id"] for s in summaries}
    assert len(run_ids) == 3
    for rid in run_ids:
        stored = [c["id"] for c in store.calls(rid)]
        assert len(stored) == len(set(stored))  # no call twice
        assert set(stored) == _planned(store, rid)  # every planned call, none lost
    for s in summaries:  # each process's summary is the database's recount
        recount = _recount(store, s["run_id"])
        for e in s["endpoints"]:
            r = recount[e["name"]]
            assert (e["calls"], e["successes"], e["errors"]) == (
                r["calls"],
                r["successes"],
                dict(r["errors"]),  # type: ignore[call-overload]
            ), (s["run_id"], e["name"])
    assert sum(summaries[0]["endpoints"][i]["successes"] for i in range(2)) < 2 * 16  # faults hit
    # both resumers made calls of the one run: some calls were made twice, stored once
    assert len(log.read_text().splitlines()) > len(store.calls(resumed))
    store.close()


def _parse(path: str):
    from bakeoff.plugins import load

    return load(Path(path))


@pytest.fixture(scope="module")
def pg_ui_run(pg_server, tmp_path_factory):
    url = pg_server.url(pg_server.new_database())
    return url, make_run(url)  # type: ignore[arg-type]


def test_every_ui_page_renders_and_a_vote_is_stored_on_postgres(pg_ui_run):
    url, run_id = pg_ui_run
    srv = Server(url)  # type: ignore[arg-type]
    try:
        kinds = crawl(srv, run_id)
        assert {"suite", "item", "call", "audit", "arena", "compare"} <= kinds
        status, _, html = srv.get(f"/run/{run_id}/arena")
        form = dict(re.findall(r'name="(left|right|token)" value="([^"]+)"', html))
        body = urllib.parse.urlencode({**form, "winner": "left"})
        status, _, _ = srv.get(f"/run/{run_id}/arena", method="POST", body=body)
        assert status == 303
    finally:
        srv.stop()
    store = Store(url)
    assert [v.voter for v in store.votes(run_id)] == ["human"]
    store.close()


def test_processes_opening_a_new_database_together_migrate_it_once(pg_url):
    code = "import sys; from bakeoff.store import Store; Store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    store = Store(pg_url)
    names = [r[0] for r in store.db.execute("SELECT name FROM _migrations ORDER BY name")]
    store.close()
    assert names == sorted(n for n, _ in MIGRATIONS)
