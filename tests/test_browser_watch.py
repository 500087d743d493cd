"""The watch page in a real headless Chromium, over a history of real `watch` checks under the
simulated clock: a fake endpoint (`steady`) that fails one check (a gap), and one that silently
switches model after its 5th check (`switched`: a distortion proxy between two fake servers, as
tests/test_watch.py makes it) and is alarmed at the 6th. The timeline of each endpoint is drawn;
one click on the alarm opens the prompts whose answers changed, before and after."""

from __future__ import annotations

import shutil
from contextlib import closing

import pytest
from markupsafe import escape

from bakeoff.lineups import purposes
from bakeoff.store import Store
from bakeoff.ui import NotFound, Views
from bakeoff.watch import DetectorSettings, Watch, acknowledge, make_check
from test_browser import Shots, _page, _ready, ui_server
from test_watch import SIX_HOURS, SMALL, Switching

T0 = 1_700_000_000.0
CHECKS = 8
GAP_AT = 4
"""The check at which `steady` answers 500 to everything."""


def _lineup(url: str, down: bool) -> str:
    faults = ", fake: {faults: {server_error: 1.0}}, retry: {max_retries: 0}" if down else ""
    return (
        "endpoints:\n"
        f"  - {{name: steady, provider: fake{faults}}}\n"
        f"  - {{name: switched, base_url: '{url}', model: m}}\n"
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The database of 8 checks of watch `nightly` (8 anchors + 2 rotating prompts each)."""
    d = tmp_path_factory.mktemp("browser-watch")
    db, path = d / "watch.db", d / "nightly.yaml"
    served = Switching(after=5 * 10)
    try:
        watch = Watch(str(db), path, "nightly", SMALL)
        for k in range(CHECKS):
            path.write_text(_lineup(served.url, down=k + 1 == GAP_AT))
            make_check(watch, now=T0 + k * SIX_HOURS, slot=k)
    finally:
        served.close()
    return db


def test_every_checks_evidence_is_what_its_detector_counted(history, tmp_path):
    """The evidence page of each check lists as many changed prompts as the detector counted —
    also after the change is acknowledged (a copy of the history: `switched` acknowledged, then 4
    checks of what it serves now, compared with its new baseline, not the first)."""
    db = tmp_path / "acked.db"
    shutil.copy(history, db)
    acknowledge(str(db), "nightly", "switched")
    served = Switching(after=0)  # the second model from the start: what `switched` serves now
    try:
        path = tmp_path / "nightly.yaml"
        path.write_text(_lineup(served.url, down=False))
        watch = Watch(str(db), path, "nightly", SMALL)
        for k in range(CHECKS, CHECKS + 4):
            make_check(watch, now=T0 + k * SIX_HOURS, slot=k)
    finally:
        served.close()
    with closing(Store(str(db))) as store:
        views = Views(store)
        steps = store.watch_steps("nightly")
        assert len(steps) == 2 * (CHECKS + 4)
        page = views.page(f"/watch/evidence?name=nightly&endpoint=switched&check={CHECKS + 2}")
        assert "the baseline formed after acknowledged change 1" in page.html
        for s in steps:
            if s.gap:
                continue
            html = views.page(f"/watch/evidence?name=nightly&endpoint={s.endpoint}&check={s.seq}")
            if s.phase == "baseline" and s.seq == 1:
                assert "No anchor" in html.html
            assert html.html.count('class="example changed"') == s.changed, (s.endpoint, s.seq)
        changed = [s.changed for s in steps if s.endpoint == "switched"]
        assert changed[5:] == [8, 8, 8, 0, 0, 0, 0]
        for bad in ("check=99", "check=x", "check=1&endpoint=nobody"):
            with pytest.raises(NotFound):
                views.page(f"/watch/evidence?name=nightly&endpoint=switched&{bad}")
        with pytest.raises(NotFound):
            views.page("/watch?name=nobody")


def test_the_watch_pages_read_the_same_on_sqlite_and_postgresql(db_target, tmp_path):
    """Three checks (a baseline of two, then the switch) in each store: the page draws the alarm,
    and its evidence lists the 8 anchors with their baseline answers."""
    served = Switching(after=2 * 10)
    try:
        path = tmp_path / "nightly.yaml"
        path.write_text(_lineup(served.url, down=False))
        settings = SMALL.model_copy(update={"detector": DetectorSettings(baseline_checks=2)})
        watch = Watch(db_target, path, "nightly", settings)
        for k in range(3):
            make_check(watch, now=T0 + k * SIX_HOURS, slot=k)
    finally:
        served.close()
    with closing(Store(db_target)) as store:
        views = Views(store)
        html = views.page("/watch?name=nightly").html
        assert html.count('data-name="alarm"') == 1 and html.count('class="threshold"') == 2
        ev = views.page("/watch/evidence?name=nightly&endpoint=switched&check=3").html
        assert ev.count('class="example changed"') == 8
        for a in store.baseline_answers("nightly"):
            if a.endpoint == "switched":
                assert str(escape(a.answer)) in ev


def test_the_watch_page_draws_each_timeline_and_one_click_opens_the_alarms_evidence(
    history, browser, tmp_path
):
    # `history` before `browser`: sync Playwright runs an event loop in this thread, in which a
    # check's asyncio.run() fails; for the same reason the tests making checks come before this one
    shot = Shots(tmp_path)
    with ui_server(history) as ui:
        ctx, page = _page(browser)
        page.goto(ui + "/")
        _ready(page)
        page.click("#watches >> text=nightly")  # linked from the index
        _ready(page)
        assert page.locator("section.watch-ep").count() == 2
        for ep in ("steady", "switched"):
            section = page.locator(f"section.watch-ep[data-endpoint={ep}]")
            svg = section.locator("svg.chart-svg")
            assert svg.count() == 1
            assert svg.locator("line.threshold").count() == 1
            assert svg.locator("g.pt[data-name=baseline]").count() == SMALL.detector.baseline_checks
            assert section.locator("table.checks tbody tr").count() == CHECKS
        steady = page.locator("section.watch-ep[data-endpoint=steady]")
        assert steady.locator("g.pt[data-name=gap]").count() == 1
        assert steady.locator("g.pt[data-name=alarm]").count() == 0
        assert "server_error" in steady.locator(f"tr[data-check='{GAP_AT}']").inner_text()
        # monitored checks: every check after the baseline but the gap
        assert steady.locator("g.pt[data-name=statistic]").count() == CHECKS - 3 - 1
        switched = page.locator("section.watch-ep[data-endpoint=switched]")
        assert switched.locator("g.pt[data-name=statistic]").count() == 2  # checks 4 and 5
        assert switched.locator("g.pt[data-name='in alarm']").count() == 2  # checks 7 and 8
        alarm = switched.locator("svg a g.pt[data-name=alarm]")
        assert alarm.count() == 1
        assert "check 6" in (alarm.locator("title").text_content() or "")
        shot(page, "watch")
        alarm.click()  # the one click
        _ready(page)
        assert "/watch/evidence" in page.url and "check=6" in page.url
        assert "This check raised the alarm" in page.locator("#evidence-summary").inner_text()
        pairs = page.locator("section.changed")
        assert pairs.count() == SMALL.anchors
        with closing(Store(str(history))) as store:
            base = {
                a.item_id: a.answer
                for a in store.baseline_answers("nightly")
                if a.endpoint == "switched"
            }
            run_id = store.watch_checks("nightly")[5].run_id
            after = {
                c["item_id"]: c["output_text"]
                for c in store.calls(run_id)
                if c["endpoint"] == "switched" and c["suite"] == purposes.fidelity_suite("greedy")
            }
        for i in range(pairs.count()):
            pair = pairs.nth(i)
            item = pair.get_attribute("data-item")
            assert item in base
            assert pair.locator(".msg pre").count() >= 1  # the prompt
            assert pair.locator(".before pre").inner_text() == base[item]
            shown_after = pair.locator(".after pre").evaluate(
                "e => { const c = e.cloneNode(true); c.querySelectorAll('del')"
                ".forEach(d => d.remove()); return c.textContent }"
            )
            assert shown_after == after[item] != base[item]
        shot(page, "watch-evidence", full=True)
        assert page.errors == []
        ctx.close()
