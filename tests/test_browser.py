"""The UI and the report in a real headless Chromium (Debian's `chromium`, driven by Playwright; the
Makefile installs it). Screenshots of every view are saved in the test's directory, and in
$BAKEOFF_SCREENSHOTS when set (`make screenshots` refreshes docs/screenshots/ that way)."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BAKEOFF
from uirun import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    db = d / "ui.db"
    return db, make_run(db)


@contextlib.contextmanager
def ui_server(db: Path):
    """`bakeoff ui` as a user starts it, on a free loopback port; yields its URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*BAKEOFF, "ui", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"bakeoff ui did not start: {proc.stderr.read() if proc.stderr else ''}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture(scope="module")
def ui(run):
    with ui_server(run[0]) as url:
        yield url


DOCS = {
    "overview",
    "suite",
    "item",
    "trace",
    "audit",
    "arena",
    "report-overview",
    "compare",
    "watch",
}


class Shots:
    def __init__(self, tmp: Path) -> None:
        self.dirs = [tmp]
        if os.environ.get("BAKEOFF_SCREENSHOTS"):
            self.dirs.append(Path(os.environ["BAKEOFF_SCREENSHOTS"]))

    def __call__(self, page, name: str, full: bool = False) -> None:
        for i, d in enumerate(self.dirs):
            if i and name not in DOCS:
                continue
            d.mkdir(parents=True, exist_ok=True)
            # the docs get the first screen of each main view (a small repo), tests the whole page
            page.screenshot(path=str(d / f"{name}.png"), full_page=full and not i)
            assert (d / f"{name}.png").stat().st_size > 10_000


def _page(browser, offline: bool = False, **options):
    ctx = browser.new_context(**{"viewport": {"width": 1440, "height": 900}, **options})
    if offline:
        ctx.set_offline(True)
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return ctx, page


def _ready(page) -> None:
    page.wait_for_selector("body[data-ready]", timeout=20_000)


def _assert_inert(page) -> None:
    """Hostile model output shows as text: no script ran, no element was made from it."""
    assert page.evaluate("window.__pwned") is None
    main = page.locator("main")
    assert main.locator("script").count() == 0
    assert main.locator("img").count() == 0
    assert main.locator("iframe").count() == 0
    assert main.locator("a[href^='javascript']").count() == 0
    assert "<script>window.__pwned=1</script>" in main.inner_text()


def test_click_through_overview_item_trace_and_vote(browser, ui, run, tmp_path):
    db, run_id = run
    shot = Shots(tmp_path)
    ctx, page = _page(browser)
    page.goto(ui + "/")
    _ready(page)
    shot(page, "runs")
    page.click(f"text={run_id}")
    _ready(page)
    matrix = page.locator("#matrix")
    assert matrix.locator("tbody tr").count() == 4
    assert "different" in matrix.inner_text()  # the hostile endpoint fails the audit
    page.wait_for_selector(".chart svg")  # the Pareto plot was drawn
    shot(page, "overview-hostile", full=True)
    # a suite, filtered to the items where an output differs from the reference's
    page.click("nav.tabs >> text=arith")
    _ready(page)
    all_rows = page.locator("#items tbody tr").count()
    page.click("text=output differs from the reference")
    _ready(page)
    assert 0 < page.locator("#items tbody tr").count() <= all_rows
    shot(page, "suite")
    page.locator("a.item-link").first.click()
    _ready(page)
    cols = page.locator("#side-by-side .col")
    assert cols.count() == 4
    evil = page.locator("#side-by-side .col[data-endpoint='evil']")
    assert evil.locator("ins").count() > 0  # the word diff against the reference
    _assert_inert(page)
    shot(page, "item", full=True)
    evil.locator("a.trace-link").first.click()
    _ready(page)
    assert "evil" in page.locator("h1").inner_text()
    assert page.locator("#attempts tbody tr").count() >= 1
    assert '"messages"' in page.locator("#request").inner_text()
    assert "window.__pwned" in page.locator("#response").inner_text()
    _assert_inert(page)
    shot(page, "trace", full=True)
    # the audit's evidence
    page.click("nav.tabs >> text=Fidelity audit")
    _ready(page)
    page.wait_for_selector(".chart svg")
    _assert_inert(page)
    shot(page, "audit", full=True)
    # blind votes
    page.click("nav.tabs >> text=Arena")
    _ready(page)
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM votes").fetchone()[0]
    for i in range(6):
        assert page.locator("#vote").count() == 1
        page.click(["#vote-a", "#vote-b", "#vote-tie"][i % 3])
        _ready(page)
    after = sqlite3.connect(db).execute("SELECT COUNT(*) FROM votes").fetchone()[0]
    assert after - before == 6
    assert page.locator("#ratings-human tbody tr").count() >= 2
    shot(page, "arena", full=True)
    assert page.errors == []
    ctx.close()


def test_compare_two_runs(browser, ui, run, tmp_path):
    db, _ = run
    second = make_run(db)  # the same lineup again: the same items, paired
    ctx, page = _page(browser)
    page.goto(ui + "/compare")
    _ready(page)
    page.select_option("select[name=b]", second)
    page.click("button[type=submit]")
    _ready(page)
    rows = page.locator("#compare tbody tr")
    assert rows.count() == 4  # 4 endpoints (rows) × 2 suites (columns)
    assert rows.first.locator("td.cmp").count() == 2
    assert "ref" in rows.first.inner_text()
    Shots(tmp_path)(page, "compare-same-lineup")
    ctx.close()


def test_report_offline_from_disk(browser, run, tmp_path):
    db, run_id = run
    out = tmp_path / "report.html"
    r = subprocess.run(
        [*BAKEOFF, "report", run_id, "--db", str(db), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    shot = Shots(tmp_path)
    ctx, page = _page(browser, offline=True)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(out.as_uri())
    _ready(page)
    assert page.locator("#matrix tbody tr").count() == 4
    page.wait_for_selector(".chart svg")
    shot(page, "report-overview")
    page.click("nav.tabs >> text=arith")
    page.wait_for_selector("#items")
    page.locator("a.item-link").first.click()
    page.wait_for_selector("#side-by-side")
    assert page.locator("#side-by-side .col").count() == 4
    _assert_inert(page)
    page.locator("#side-by-side .col[data-endpoint='evil'] a.trace-link").first.click()
    page.wait_for_selector("#request")
    _assert_inert(page)
    shot(page, "report-trace")
    page.go_back()
    page.wait_for_selector("#side-by-side")
    page.click("nav.tabs >> text=Fidelity audit")
    page.wait_for_selector(".chart svg")
    _assert_inert(page)
    page.click("nav.tabs >> text=Arena")
    page.wait_for_selector("text=Ratings")
    assert page.locator("#vote").count() == 0  # read-only
    # nothing but the file itself was ever requested
    assert all(u.startswith("file://") or u.startswith("data:") for u in requests), requests
    assert page.errors == []
    assert re.search(r"\d+ pages, offline", page.locator("header").inner_text())
    ctx.close()
