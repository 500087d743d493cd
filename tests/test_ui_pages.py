"""The suite, item and compare pages over HTTP, the run addresses the CLI accepts (`last`, id
prefixes), and the report kept up to date by the commands that add to a run. In Chromium:
test_browser_pages.py."""

from __future__ import annotations

import json
import re
import sqlite3
from html import unescape
from pathlib import Path

import pytest

from conftest import bakeoff
from uirun import Server, make_run, many_lineup, report_pages


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, str, str]:
    d = tmp_path_factory.mktemp("pages")
    db = d / "ui.db"
    return db, make_run(db, many_lineup(d)), make_run(db, many_lineup(d, second=True))


@pytest.fixture(scope="module")
def server(runs):
    srv = Server(runs[0])
    yield srv
    srv.stop()


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_every_run_page_takes_last_and_a_prefix(server, runs):
    db, first, second = runs
    con = sqlite3.connect(db)
    call_id = con.execute("SELECT id FROM calls WHERE run_id = ? LIMIT 1", (first,)).fetchone()[0]
    prefix = first[: len(first) - 3]
    assert not second.startswith(prefix)
    for tail in (
        "",
        "/suite?name=arith",
        "/item?suite=arith&id=arith-0-0001",
        f"/call?id={call_id}",
        "/audit",
        "/arena",
    ):
        status, _, html = server.get(f"/run/{prefix}{tail}")
        assert status == 200, tail
        assert f'run <a href="/run/{first}">{first}</a>' in html  # links go to the full id
        if "call" not in tail:
            status, _, html = server.get(f"/run/last{tail.replace(call_id, 'x')}")
            assert status == 200, tail
            assert f"/run/{second}" in html and f"/run/{first}" not in html
    # a prefix both runs share is refused, naming them; no such run says so
    common = next(i for i in range(len(first)) if first[i] != second[i])
    status, _, html = server.get(f"/run/{first[:common]}/suite?name=arith")
    assert status == 404
    assert "ambiguous" in html and first in html and second in html
    status, _, html = server.get("/run/zz-nope/suite?name=arith")
    assert status == 404 and "no run zz-nope" in html


def test_bad_queries_are_clear_404s(server, runs):
    _, first, _ = runs
    for query, message in (
        ("/suite?name=arith&show=bogus", "show: one of all, disagree, differ, worse, better"),
        ("/suite?name=arith&show=worse&ep=ref", "ep: one of twin, half, mini, flaky, evil"),
        ("/suite?name=arith&sort=sideways", "sort: one of item, disagree"),
        ("/item?suite=arith&id=arith-0-0001&cols=ref,nobody", "cols: no endpoint 'nobody'"),
        ("/item?suite=arith&id=arith-0-0001&view=fancy", "view: diff or plain"),
    ):
        status, _, html = server.get(f"/run/{first}{query}")
        assert status == 404, query
        assert message in unescape(html), (query, _text(html))


def test_sequential_tool_items_list_the_users_question(server, runs):
    db, first, _ = runs
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT item_id, input_json FROM items WHERE run_id = ? AND tier = 'sequential'", (first,)
    ).fetchall()
    assert rows
    _, _, html = server.get(f"/run/{first}/suite?name=tools")
    for item_id, input_json in rows:
        messages = json.loads(input_json)["messages"]
        assert messages[-1]["role"] == "tool"  # the conversation ends with the tool's result
        question = [m["content"] for m in messages if m["role"] == "user"][-1]
        row = html.split(f'id="row-{item_id}"')[1].split("</tr>")[0]
        cell = _text(row.split('class="prompt">')[1].split("</td>")[0])
        assert cell == question


def test_search_sort_and_filters_keep_their_query(server, runs):
    _, first, _ = runs
    base = f"/run/{first}/suite?name=tools"
    _, _, html = server.get(base + "&q=WEATHER")
    ids = re.findall(r'id="row-([^"]+)"', html)
    assert ids and all(
        "weather" in _text(html.split(f'id="row-{i}"')[1][:600]).lower() for i in ids
    )
    # sorted by disagreement: the counts never rise down the list
    _, _, html = server.get(base + "&sort=disagree")
    counts = [int(n or 0) for n in re.findall(r'class="n disagree-count">(\d*)<', html)]
    assert len(counts) == 12 and counts == sorted(counts, reverse=True) and counts[0] > 0
    # an item opened from a filtered list walks that list, and links back to it
    _, _, html = server.get(base + "&show=worse&ep=evil")
    listed = re.findall(r'id="row-([^"]+)"', html)
    link = unescape(re.search(r'class="item-link" href="([^"]+)"', html).group(1))
    assert "show=worse" in link and "ep=evil" in link
    _, _, item = server.get(link)
    nxt = unescape(re.search(r'id="next-item" rel="next" data-key="j" href="([^"]+)"', item)[1])
    assert f"id={listed[1]}" in nxt and "show=worse" in nxt
    assert f"item 1 of {len(listed)} in the filtered list" in _text(item)


def test_report_holds_each_endpoints_filters(runs, tmp_path):
    from bakeoff.store import Store
    from bakeoff.ui import write_report

    db, first, _ = runs
    write_report(Store(db), first, tmp_path / "r.html")
    pages = report_pages(tmp_path / "r.html")
    for ep in ("half", "flaky", "evil"):
        for show in ("worse", "better", "disagree", "differ"):
            assert f"/run/{first}/suite?ep={ep}&name=tools&show={show}" in pages
    item = pages[f"/run/{first}/item?id=arith-0-0001&suite=arith"]["html"]
    assert 'data-view="plain"' in item and "<button" in item  # the toggle works in place
    assert 'id="pick-cols"' not in item  # the form needs the web app
    for target in re.findall(r'href="#([^"]*)"', item):
        assert target.replace("&amp;", "&").split("#")[0] in pages, target


def test_compare_refuses_one_run_twice(runs):
    db, first, _ = runs
    r = bakeoff("compare", first, "last", "--db", str(db))
    assert r.returncode == 0, r.stderr
    r = bakeoff("compare", first, first[:-2], "--db", str(db))
    assert r.returncode == 2 and "same run" in r.stderr


def test_later_votes_and_perf_sweeps_refresh_the_report(tmp_path):
    """The report `bakeoff run` writes is rewritten when `bakeoff arena` or `bakeoff perf --run`
    add to the run, and only then."""
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "reference: ref\n"
        "defaults: {temperature: 0, max_tokens: 16}\n"
        "run: {suites: [arith], limit: 3, probe: false}\n"
        "endpoints:\n"
        "  - {name: ref, provider: fake, fake: {mode: echo, ttft_ms: 1, itl_ms: 1}}\n"
        "  - {name: other, provider: fake, fake: {mode: fixed, reply: '42', ttft_ms: 1}}\n"
        "  - {name: judge, provider: fake, fake: {mode: fixed, reply: 'A'}}\n"
    )
    db = str(tmp_path / "b.db")
    r = bakeoff("run", "-c", str(lineup), "--db", db, "-q")
    assert r.returncode == 0, r.stderr
    [report] = (tmp_path / "bakeoff-reports").glob("*.html")
    run_id = report.stem
    assert "Judge biases" not in pages_text(report, f"/run/{run_id}/arena")
    r = bakeoff("arena", "last", "--db", db, "--judge", "judge", "--pairs", "2")
    assert r.returncode == 0, r.stderr
    assert "rewriting it" in r.stderr
    assert "Judge biases" in pages_text(report, f"/run/{run_id}/arena")
    r = bakeoff("arena", "last", "--db", db)  # nothing new: the report stays as it is
    assert r.returncode == 0 and "rewriting" not in r.stderr
    r = bakeoff(
        "perf", "-c", str(lineup), "--db", db, "--run", run_id[:12], "--endpoint", "ref",
        "--levels", "1", "--duration", "1", "--warmup", "0.1", "--cooldown", "0.1", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "rewriting it" in r.stderr
    perf = [k for k in report_pages(report) if k.startswith("/perf?id=")]
    assert len(perf) == 1 and perf[0][len("/perf?id=") :] in pages_text(report, f"/run/{run_id}")


def pages_text(report: Path, address: str) -> str:
    return _text(report_pages(report)[address]["html"])


def test_the_fronts_leave_out_what_the_audit_found_different(tmp_path):
    """An endpoint the audit finds `different` (right on arith, but a pirate everywhere else) is
    no choice however cheap: the quality × cost front is drawn among the others, it is shown off
    the front, marked, and the overview names the faithful endpoint that is cheapest."""
    from bakeoff.suites.arith import Arith

    right = {it.messages[-1]["content"]: f"The answer is {it.target}." for it in
             Arith().items(seed=0, n=8)}  # fmt: skip

    def ep(name: str, price: float, reply: str = "I don't know.") -> str:
        fake = {"mode": "script", "script": right, "reply": reply, "ttft_ms": 5, "itl_ms": 2}
        return json.dumps(
            {"name": name, "provider": "fake", "fake": fake,
             "price": {"input_per_m": price, "output_per_m": 2 * price}}
        )  # fmt: skip

    lu = tmp_path / "l.yaml"
    lu.write_text(
        "reference: ref\ndefaults: {temperature: 0, max_tokens: 48}\n"
        "run: {suites: [arith], limit: 8}\nendpoints:\n"
        f"  - {ep('ref', 1.0)}\n  - {ep('twin', 0.5)}\n  - {ep('pirate', 0.01, 'Arr, matey!')}\n"
    )
    db = tmp_path / "f.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--json", "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    verdicts = {e["name"]: e["fidelity"]["verdict"] for e in s["endpoints"]}
    assert verdicts == {"ref": "reference", "twin": "same", "pirate": "different"}
    scores = {e["name"]: e["suites"]["arith"]["score"] for e in s["endpoints"]}
    assert scores == {"ref": 1.0, "twin": 1.0, "pirate": 1.0}  # the pirate is right and cheapest
    pareto = s["pareto"]
    assert pareto["fronts"]["cost"] == ["twin"] and pareto["rejected"] == ["pirate"]
    assert "pirate" not in pareto["fronts"]["speed"] and pareto["picks"]["cheapest"] == "twin"
    assert pareto["picks"]["fastest"] in ("ref", "twin")
    srv = Server(db)
    try:
        status, _, html = srv.get(f"/run/{s['run_id']}")
    finally:
        srv.stop()
    assert status == 200
    assert 'data-front="twin" data-rejected="pirate"' in html
    text = _text(html)
    assert "and cheapest: twin" in text and "found different by the audit (pirate)" in text
    assert "pirate ✗" in text  # the chart marks it
