"""A run of 2,100 calls through every fault the wire can produce completes, loses nothing, and its
summaries equal a recount from the database (issue 7, item 1)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sqlite3

from bakeoff.endpoints import ErrorClass
from conftest import bakeoff

ITEMS = 700

FAULTS = (
    "rate_limit: 0.04, rate_limit_bare: 0.04, server_error: 0.04, bad_gateway: 0.04,"
    " unavailable: 0.04, html: 0.02, no_choices: 0.02, malformed: 0.04, truncate: 0.04,"
    " reset: 0.04, stall: 0.02, slow: 0.05"
)


def _black_hole() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose accept queue is full: the kernel drops new SYNs, so connecting times out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the queue (backlog 0 still queues a connection or two)
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("the black hole accepted a connection")
    except TimeoutError:
        pass
    finally:
        probe.close()
    return srv, fillers, port


def test_two_thousand_calls_through_every_fault(tmp_path):
    srv, fillers, port = _black_hole()
    lineup = tmp_path / "faults.yaml"
    lineup.write_text(
        f"""
reference: clean
defaults: {{temperature: 0, max_tokens: 16}}
run: {{suites: [arith], limit: {ITEMS}, probe: false}}
audit: {{enabled: false}}
endpoints:
  - name: clean
    provider: fake
    fake: {{mode: echo, ttft_ms: 1}}
    max_concurrency: 16
  - name: faulty
    provider: fake
    fake: {{mode: echo, ttft_ms: 2, itl_ms: 1, seed: 7, faults: {{{FAULTS}}}}}
    max_concurrency: 32
    timeouts: {{first_token: 2, stall: 0.5, total: 10}}
    retry: {{max_retries: 2, backoff_base_s: 0.005, backoff_max_s: 0.05}}
  - name: unreachable
    base_url: http://127.0.0.1:{port}/v1
    max_concurrency: 64
    timeouts: {{connect: 0.2}}
    retry: {{max_retries: 1, backoff_base_s: 0.005}}
"""
    )
    db = tmp_path / "f.db"
    try:
        args = (
            "run",
            "-c",
            str(lineup),
            "--db",
            str(db),
            "--json",
            "--no-report",
            "-q",
            "--allow-errors",
        )
        r = bakeoff(*args, "--no-preflight")  # the unreachable endpoint is the point here
    finally:
        for s in (srv, *fillers):
            s.close()
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["status"] == "complete"
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    calls = con.execute("SELECT * FROM calls").fetchall()
    assert len(calls) == 3 * ITEMS >= 2000
    # one row per (endpoint, item): nothing asked twice once it succeeded, nothing missing
    keys = [(c["endpoint"], c["item_id"], c["repeat"]) for c in calls]
    assert len(set(keys)) == len(keys)
    known = {e.value for e in ErrorClass}
    scored = {
        r[0] for r in con.execute("SELECT DISTINCT call_id FROM scores WHERE scorer = 'numeric'")
    }
    for c in calls:
        if c["status"] == "ok":
            assert c["id"] in scored  # every success is scored
        else:
            assert c["error_class"] in known, c["error_class"]
    by = {e["name"]: e for e in summary["endpoints"]}
    # every fault shows up, classified, and the unreachable port as connect timeouts
    faulty_errors = set(by["faulty"]["errors"])
    assert {"rate_limited", "server_error", "bad_response"} <= faulty_errors | retried_classes(con)
    assert by["unreachable"]["errors"] == {"timeout": ITEMS}
    detail = con.execute(
        "SELECT error_detail FROM calls WHERE endpoint = 'unreachable' LIMIT 1"
    ).fetchone()[0]
    assert "connect" in detail.lower()
    assert by["clean"]["successes"] == ITEMS
    # the JSON summary equals a recount from the database
    for name, e in by.items():
        rows = [c for c in calls if c["endpoint"] == name]
        ok = [c for c in rows if c["status"] == "ok"]
        assert e["calls"] == len(rows) and e["successes"] == len(ok)
        errs: dict[str, int] = {}
        for c in rows:
            if c["status"] != "ok":
                errs[c["error_class"]] = errs.get(c["error_class"], 0) + 1
        assert e["errors"] == errs
        passed = con.execute(
            "SELECT COUNT(*) FROM scores s JOIN calls c ON c.id = s.call_id"
            " WHERE c.endpoint = ? AND s.scorer = 'numeric' AND s.passed = 1",
            (name,),
        ).fetchone()[0]
        st = e["suites"]["arith"]
        assert st["n"] == len(rows) and st["answered"] == len(ok)  # failures counted, beside
        if not ok:  # every call failed: no score, never a 0 made of failures
            assert st["score"] is None and st["no_score"].startswith(f"{len(rows)}/{len(rows)}")
        else:  # over the answered calls; counting failures as wrong, shown beside past 2%
            assert st["score"] == round(passed / len(ok), 4)
            if len(ok) < 0.98 * len(rows):
                assert st["score_failures_as_wrong"] == round(passed / len(rows), 4)
        assert e["attempts"] == sum(c["n_attempts"] for c in rows)
    # and so does the printed table
    for name, e in by.items():
        line = next(x for x in r.stderr.splitlines() if re.search(rf"\b{name}\b", x) and "│" in x)
        cells = [x.strip() for x in line.split("│")]
        assert str(e["calls"]) in cells and str(e["successes"]) in cells, line


def retried_classes(con: sqlite3.Connection) -> set[str]:
    """Error classes met on attempts that a retry then recovered."""
    return {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT error_class FROM attempts WHERE error_class IS NOT NULL"
        )
    }
