"""The overview answers "which one", in a real headless Chromium: on a run whose winners are known
by construction (`uirun.winner_lineup`), the best cell of each column is marked, the quality × cost
front holds exactly the non-dominated endpoints, retries and cache replays are labelled, columns
sort, the dark scheme applies, charts come without a chart library, the arena votes by key."""

from __future__ import annotations

import sqlite3

import pytest

from test_browser import Shots, _page, _ready, ui_server
from uirun import make_run, winner_lineup


@pytest.fixture(scope="module")
def winner(tmp_path_factory):
    db = tmp_path_factory.mktemp("winner") / "ui.db"
    first = make_run(db, winner_lineup(), cache=True)
    replay = make_run(db, winner_lineup(), cache=True)  # the same requests: answered from the cache
    with ui_server(db) as url:
        yield db, first, replay, url


def _marked(page, col: str) -> set[str]:
    rows = page.locator(f"#matrix tbody tr:has(td.best[data-col='{col}'])")
    return {rows.nth(i).get_attribute("data-endpoint") for i in range(rows.count())}


def test_best_cells_fronts_and_caveats(browser, winner, tmp_path):
    db, run_id, _, url = winner
    ctx, page = _page(browser)
    page.goto(f"{url}/run/{run_id}")
    _ready(page)
    assert _marked(page, "suite:arith") == {"ref", "cheap", "fast"}  # every answer right
    assert _marked(page, "ttft") == {"fast"}
    assert _marked(page, "tok_s") == {"fast"}
    assert _marked(page, "cost_per_correct") == {"cheap"}  # right answers at a tenth of ref's price
    assert _marked(page, "error_rate") == set()  # five of six at 0%: a mark on each says nothing
    # no other endpoint is as good and as cheap: `cheap` (quality 1 for least); `ref` and `fast`
    # cost more for the same quality; `wrong` (quality 0, cheapest of all) the audit found
    # different: off the front, marked, whatever its price
    assert page.get_attribute("#front-cost", "data-front") == "cheap"
    assert page.get_attribute("#front-cost", "data-rejected") == "wrong"
    assert page.locator("#front-cost g.pt[data-name='wrong'] path.ruled-out").count() == 1
    picks = page.locator("#picks").inner_text()
    assert "fastest: fast" in picks and "cheapest: cheap" in picks, picks
    assert page.get_attribute("#front-speed", "data-front") == "fast"
    page.wait_for_selector("#front-cost svg")
    page.wait_for_selector("#front-speed svg")
    # the retried endpoint says how often it was retried, as the store has it
    retried = (
        sqlite3.connect(db)
        .execute(
            "SELECT COUNT(*) FROM calls WHERE run_id = ? AND endpoint = 'flaky' AND n_attempts > 1"
            " AND suite = 'arith'",
            (run_id,),
        )
        .fetchone()[0]
    )
    assert retried > 0
    cell = page.locator("#matrix tr[data-endpoint='flaky'] td[data-col='error_rate']").inner_text()
    assert f"{retried} of 12 calls retried" in cell, cell
    ttft = page.locator("#matrix tr[data-endpoint='flaky'] td[data-col='ttft']").inner_text()
    assert "from the first send" in ttft
    ref_cell = page.locator("#matrix tr[data-endpoint='ref'] td[data-col='error_rate']")
    assert "retried" not in ref_cell.inner_text()
    # sort by tok/s, fastest first; again, slowest first
    page.click("#matrix thead th:has-text('tok/s p50')")
    assert page.locator("#matrix tbody tr").first.get_attribute("data-endpoint") == "fast"
    page.click("#matrix thead th:has-text('tok/s p50')")
    assert page.locator("#matrix tbody tr").last.get_attribute("data-endpoint") == "fast"
    page.reload()
    _ready(page)
    Shots(tmp_path)(page, "overview", full=True)
    assert page.errors == []
    ctx.close()


def test_cached_calls_are_counted_and_left_out(browser, winner):
    _, _, replay, url = winner
    ctx, page = _page(browser)
    page.goto(f"{url}/run/{replay}")
    _ready(page)
    ttft = page.locator("#matrix tr[data-endpoint='ref'] td[data-col='ttft']").inner_text()
    assert "12 cached calls left out" in ttft, ttft
    cost = page.locator("#matrix tr[data-endpoint='ref'] td[data-col='cost_per_correct']")
    assert "replayed from the cache: not billed" in cost.inner_text()
    assert page.errors == []
    ctx.close()


def test_dark_scheme_and_no_chart_library(browser, winner):
    """The charts are SVG from the server: a page with two charts fetches its HTML, app.css and
    app.js and nothing else (plotly.js, 4.8 MB, made such a page take ~2 s to first show)."""
    _, run_id, _, url = winner
    ctx, page = _page(browser, color_scheme="dark")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url.replace(url, "")))
    page.goto(url + "/")
    _ready(page)
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(17, 24, 39)", bg
    fetched.clear()
    page.goto(f"{url}/run/{run_id}")
    _ready(page)
    assert sorted(fetched) == sorted([f"/run/{run_id}", "/static/app.css", "/static/app.js"])
    chart = page.locator("#front-cost svg")
    assert chart.locator("g.pt").count() == 6  # one point per endpoint, each named
    assert chart.locator("polygon").count() == 1  # the front's one star
    # the axis text follows the scheme: light grey on the dark background
    fill = page.evaluate("getComputedStyle(document.querySelector('#front-cost svg text')).fill")
    assert fill != "rgb(17, 24, 39)" and fill != "rgb(0, 0, 0)", fill
    ctx.close()
    light, lpage = _page(browser, color_scheme="light")
    lpage.goto(url + "/")
    _ready(lpage)
    assert lpage.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    light.close()


def test_arena_votes_by_key(browser, winner):
    db, run_id, _, url = winner
    ctx, page = _page(browser)
    page.goto(f"{url}/run/{run_id}/arena")
    _ready(page)
    count = "SELECT winner FROM votes WHERE run_id = ? ORDER BY rowid"
    before = sqlite3.connect(db).execute(count, (run_id,)).fetchall()
    for key in ("a", "b", "t"):
        page.keyboard.press(key)
        page.wait_for_load_state()
        _ready(page)
    after = sqlite3.connect(db).execute(count, (run_id,)).fetchall()
    assert [w for (w,) in after[len(before) :]] == ["left", "right", "tie"]
    ctx.close()
