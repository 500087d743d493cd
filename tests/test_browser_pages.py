"""The suite, item and compare pages in a real headless Chromium at 1440 px, over a run of six
endpoints (arith, instructions, tools) and a second run of the same lineup after a change. The
fixtures are test_browser.py's, over this module's `run`."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import pytest

import test_browser
from test_browser import Shots, _ready
from uirun import make_run, many_lineup

ui = test_browser.ui  # its fixture, serving this module's `run` (`browser` is conftest's)

WIDTH = 1440


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser-pages")
    db = d / "ui.db"
    return db, make_run(db, many_lineup(d)), make_run(db, many_lineup(d, second=True))


@pytest.fixture(scope="module")
def run(runs):
    """What test_browser's `ui` serves: this module's database (and its first run)."""
    return runs[0], runs[1]


def _wide(browser, js: bool = True):
    ctx = browser.new_context(viewport={"width": WIDTH, "height": 900}, java_script_enabled=js)
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return ctx, page


def _fits(page) -> None:
    """Nothing makes the page wider than the window (a wide table scrolls inside its own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide at a {WIDTH} px window"


def _outcomes(db, run_id: str, suite: str) -> dict[str, dict[str, float | None]]:
    """{item: {endpoint: score}} from the database, as the summary counts it: a failed call 0, else
    its first score's pass/fail."""
    con = sqlite3.connect(db)
    first: dict[str, float] = {}
    for call_id, value, passed in con.execute(
        "SELECT s.call_id, s.value, s.passed FROM scores s JOIN calls c ON c.id = s.call_id"
        " WHERE c.run_id = ? AND c.suite = ? ORDER BY s.rowid",
        (run_id, suite),
    ):
        first.setdefault(call_id, float(passed) if passed is not None else value)
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    for call_id, ep, item, status in con.execute(
        "SELECT id, endpoint, item_id, status FROM calls"
        " WHERE run_id = ? AND suite = ? AND repeat = 0",
        (run_id, suite),
    ):
        out[item][ep] = 0.0 if status != "ok" else first.get(call_id)
    return out


def _listed(page) -> list[str]:
    return [a.inner_text() for a in page.locator("#items a.item-link").all()]


def test_regressions_per_endpoint_are_exactly_the_worse_items(browser, ui, runs, tmp_path):
    db, first, _ = runs
    ctx, page = _wide(browser)
    for suite in ("arith", "tools"):
        truth = _outcomes(db, first, suite)
        page.goto(f"{ui}/run/{first}/suite?name={suite}")
        _ready(page)
        _fits(page)
        n_all = len(_listed(page))
        for ep in ("half", "flaky", "evil", "twin"):
            worse = sorted(i for i, o in truth.items() if o[ep] is not None and o[ep] < o["ref"])
            better = sorted(i for i, o in truth.items() if o[ep] is not None and o[ep] > o["ref"])
            row = page.locator(f"#vs-ref tr[data-endpoint={ep}]")
            assert row.locator("a.worse").inner_text() == str(len(worse))
            row.locator("a.worse").click()
            _ready(page)
            assert sorted(_listed(page)) == worse, (suite, ep)
            assert f"ep={ep}" in page.url and "show=worse" in page.url
            # every regression row marks that endpoint's cell, and no other row is listed
            marked = page.locator(f"#items td.worse[data-endpoint={ep}]").count()
            assert marked == len(worse)
            page.locator(f"#vs-ref tr[data-endpoint={ep}] a.better").click()
            _ready(page)
            assert sorted(_listed(page)) == better
            page.goto(f"{ui}/run/{first}/suite?name={suite}")
            _ready(page)
        assert any(i for i, o in truth.items() if o["half"] < o["ref"])  # the check had work
        assert len(_listed(page)) == n_all
    # the other filters still hold: search, and the order by disagreement
    page.fill("#q", "weather")
    page.click("form.search button[type=submit]")
    _ready(page)
    shown = page.locator("#items td.prompt").all_inner_texts()
    assert shown and all("weather" in t.lower() for t in shown)
    page.goto(f"{ui}/run/{first}/suite?name=tools")
    _ready(page)
    page.click("#items thead a:has-text('≠ ref')")
    _ready(page)
    counts = [int(t or 0) for t in page.locator("#items td.disagree-count").all_inner_texts()]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 3
    _fits(page)
    Shots(tmp_path)(page, "suite")
    assert page.errors == []
    ctx.close()


def test_item_page_keys_columns_and_plain_view(browser, ui, runs, tmp_path):
    db, first, _ = runs
    con = sqlite3.connect(db)
    order = [r[0] for r in con.execute(
        "SELECT item_id FROM items WHERE run_id = ? AND suite = 'arith' ORDER BY rowid", (first,)
    )]  # fmt: skip
    ctx, page = _wide(browser)
    page.goto(f"{ui}/run/{first}/item?suite=arith&id={order[1]}")
    _ready(page)
    # j and k: the next and the previous item of the suite's list
    page.keyboard.press("j")
    page.wait_for_url(f"**id={order[2]}**")
    _ready(page)
    assert page.locator("h1").inner_text().startswith(order[2])
    page.keyboard.press("k")
    page.wait_for_url(f"**id={order[1]}**")
    _ready(page)
    assert page.locator("h1").inner_text().startswith(order[1])
    # four endpoints side by side on one row, the other two further right in the scrolled box
    box = page.locator("#side-by-side")
    cols = box.locator(".col")
    assert cols.count() == 6
    shown = [c for c in cols.all() if "extra" not in (c.get_attribute("class") or "")]
    assert [c.get_attribute("data-endpoint") for c in shown] == ["ref", "twin", "half", "mini"]
    tops = {round(c.bounding_box()["y"]) for c in cols.all()}
    assert len(tops) == 1  # one row: nothing wraps
    right = box.bounding_box()["x"] + box.bounding_box()["width"]
    assert all(c.bounding_box()["x"] + c.bounding_box()["width"] <= right + 1 for c in shown)
    assert page.locator(".col.extra[data-endpoint=evil]").bounding_box()["x"] >= right
    assert box.evaluate("b => b.scrollWidth > b.clientWidth")
    _fits(page)
    Shots(tmp_path)(page, "item")
    # pick the columns: evil joins the row, twin leaves it (the form sends itself on a change)
    page.uncheck("#pick-cols input[value=twin]")
    page.wait_for_url("**cols=**")
    _ready(page)
    page.check("#pick-cols input[value=evil]")
    page.wait_for_url("**evil**")
    _ready(page)
    shown = [
        c.get_attribute("data-endpoint")
        for c in page.locator("#side-by-side .col:not(.extra)").all()
    ]
    assert shown == ["ref", "half", "mini", "evil"]
    # plain: each output as it came, no marks; the choice of columns is kept
    evil = page.locator(".col[data-endpoint=evil] pre.output").first
    output = con.execute(
        "SELECT output_text FROM calls WHERE run_id = ? AND endpoint = 'evil' AND item_id = ?",
        (first, order[1]),
    ).fetchone()[0]
    assert evil.locator("del").count() > 0 and evil.inner_text() != output
    page.click("#view-toggle a[data-view=plain]")
    _ready(page)
    assert "view=plain" in page.url and "evil" in page.url
    evil = page.locator(".col[data-endpoint=evil] pre.output").first
    assert evil.inner_text() == output
    assert "<script>" in evil.inner_text() and page.evaluate("window.__pwned") is None
    page.keyboard.press("j")  # the next item keeps both choices
    page.wait_for_url(f"**id={order[2]}**")
    assert "view=plain" in page.url and "evil" in page.url
    assert page.errors == []
    ctx.close()


def test_item_page_without_javascript(browser, ui, runs):
    """Previous / next are links and plain is an address: all of it works with scripts off."""
    _, first, _ = runs
    ctx, page = _wide(browser, js=False)
    page.goto(f"{ui}/run/{first}/item?suite=instructions&id=instructions-0-0001&view=plain")
    assert "plain" in (page.locator("#side-by-side").get_attribute("class") or "")
    dropped = page.locator(".col[data-endpoint=half] pre.output del")
    assert dropped.count() > 0 and dropped.first.is_hidden()
    page.click("#next-item")
    assert page.locator("h1").inner_text().startswith("instructions-0-0002")
    # the tools are offered, and called, as indented JSON, not one long line
    page.goto(f"{ui}/run/{first}/item?suite=tools&id=tools-0-0003")
    page.click("summary:has-text('tools offered')")
    tools = page.locator("details pre.code").first.inner_text()
    assert '\n      "name": "get_home_city"' in tools
    call = page.locator(".col[data-endpoint=ref] pre.code").first.inner_text()
    assert call.startswith("get_weather") and '\n  "city": ' in call
    assert page.locator(".msg pre.code").first.inner_text().startswith("get_home_city")
    ctx.close()


def test_compare_is_an_endpoint_by_suite_matrix(browser, ui, runs, tmp_path):
    _, first, second = runs
    ctx, page = _wide(browser)
    page.goto(f"{ui}/compare")  # the newest run against the one before it, preselected
    _ready(page)
    assert page.locator("select[name=a]").input_value() == first
    assert page.locator("select[name=b]").input_value() == second
    table = page.locator("#compare")
    heads = table.locator("thead th").all_inner_texts()
    assert heads[:5] == ["endpoint", "fidelity", "arith", "instructions", "tools"]
    assert "TTFT p50" in heads and "cost" in heads
    rows = table.locator("tbody tr")
    names = [r.get_attribute("data-endpoint") for r in rows.all()]
    assert names == ["ref", "twin", "half", "mini", "flaky", "evil"]
    mini, half = rows.nth(3), rows.nth(2)
    assert mini.locator("td.cmp.gain.d-sig").count() == 3  # right everywhere now: significant
    assert half.locator("td.cmp.loss").count() == 3
    assert rows.nth(1).locator("td.cmp.same").count() == 3
    assert rows.first.locator(".verdict.v-reference").count() == 2
    assert rows.last.locator(".verdict").count() == 2
    assert "→" in mini.locator("td.speed").first.inner_text()
    assert "ref, twin, half, mini +2" in page.locator("select[name=a] option").first.inner_text()
    _fits(page)
    Shots(tmp_path)(page, "compare")
    page.check("input[name=changed]")
    page.click("#compare-form button[type=submit]")
    _ready(page)
    names = [r.get_attribute("data-endpoint") for r in page.locator("#compare tbody tr").all()]
    assert names == ["half", "mini"]
    # one run twice: refused, with the reason
    page.goto(f"{ui}/compare?a={first}&b={first[:-2]}")
    _ready(page)
    assert "same run" in page.locator("#compare-error").inner_text()
    assert page.locator("#compare").count() == 0
    assert page.errors == []
    ctx.close()


def test_run_last_in_the_browser(browser, ui, runs):
    _, _, second = runs
    ctx, page = _wide(browser)
    page.goto(f"{ui}/run/last/suite?name=arith")
    _ready(page)
    assert second in page.locator("h1").inner_text()
    page.locator("a.item-link").first.click()
    _ready(page)
    assert f"/run/{second}/item" in page.url  # links name the run by its id
    ctx.close()
