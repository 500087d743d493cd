"""The web app and the report over HTTP and on disk (the browser tests are in test_browser.py)."""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from bakeoff.store import Store
from bakeoff.ui import Views, write_report
from uirun import HOSTILE, Server, crawl, make_run, report_pages


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("ui") / "ui.db"
    return db, make_run(db)


@pytest.fixture(scope="module")
def open_server(run):
    srv = Server(run[0])
    yield srv
    srv.stop()


def test_every_page_of_a_run_renders(open_server, run):
    _db, run_id = run
    status, headers, html = open_server.get("/")
    assert status == 200 and run_id in html
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, html = open_server.get(f"/run/{run_id}")
    assert status == 200
    for name in ("ref", "twin", "evil", "flaky", "different", "server_error"):
        assert name in html
    # crawl: every internal link of the overview, one suite page, one item and one call page
    kinds = crawl(open_server, run_id, limit=200)
    assert {"suite", "item", "call", "audit", "arena", "compare"} <= kinds


def test_model_output_is_escaped_everywhere(open_server, run):
    db, run_id = run
    con = sqlite3.connect(db)
    call_id, item_id, suite = con.execute(
        "SELECT id, item_id, suite FROM calls WHERE endpoint = 'evil' AND suite = 'arith'"
    ).fetchone()
    pages = [
        f"/run/{run_id}/item?id={item_id}&suite={suite}",
        f"/run/{run_id}/call?id={call_id}",
        f"/run/{run_id}/audit",
    ]
    for page in pages:
        status, _, html = open_server.get(page)
        assert status == 200
        assert "window.__pwned" in html  # the text is there...
        assert "<script>window" not in html and "<img src=x" not in html  # ...as text only
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
        assert 'href="javascript' not in html and "<iframe" not in html


def test_refuses_foreign_host_bad_tokens_and_paths(open_server, run):
    _, run_id = run
    # DNS rebinding: a page reached under another host name gets nothing
    status, _, _ = open_server.get("/", host="evil.example:80")
    assert status == 421
    # a vote needs the page's token
    status, _, _ = open_server.get(
        f"/run/{run_id}/arena", method="POST", body="left=a&right=b&winner=left&token=nope"
    )
    assert status == 403
    for path in ("/static/../../../etc/passwd", "/static/%2e%2e%2fetc%2fpasswd", "/static/x.js"):
        status, _, body = open_server.get(path)
        assert status == 404 and "root:" not in body
    status, _, body = open_server.get("/run/nope")
    assert status == 404 and "no run nope" in body
    status, _, body = open_server.get(f"/run/{run_id}/item?suite=arith&id=%3Cscript%3E")
    assert status == 404 and "<script>" not in body


def test_vote_with_token_is_stored(open_server, run):
    db, run_id = run
    status, _, html = open_server.get(f"/run/{run_id}/arena")
    form = dict(re.findall(r'name="(left|right|token)" value="([^"]+)"', html))
    assert set(form) == {"left", "right", "token"}
    # the page never names the endpoints of the pair
    vote_section = html.split('id="vote"')[1].split("</section>")[0]
    for name in ("ref", "twin", "evil", "flaky"):
        assert f">{name}<" not in vote_section
    body = urllib.parse.urlencode({**form, "winner": "left"})
    status, _, _ = open_server.get(f"/run/{run_id}/arena", method="POST", body=body)
    assert status == 303  # back to the arena for the next pair
    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM votes WHERE voter = 'human'").fetchone()
    assert n[0] == 1


def test_report_holds_every_page_and_no_network_reference(run, tmp_path):
    db, run_id = run
    store = Store(db)
    stats = write_report(store, run_id, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    # no external resource: every script and style is inline
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    pages = report_pages(tmp_path / "r.html")
    assert stats.pages == len(pages)
    n_calls = store.db.execute("SELECT COUNT(*) FROM calls WHERE run_id = ?", (run_id,)).fetchone()
    n_items = store.db.execute("SELECT COUNT(*) FROM items WHERE run_id = ?", (run_id,)).fetchone()
    kinds = [re.sub(r"\?.*", "", k).rsplit("/", 1)[-1] for k in pages]
    assert kinds.count("call") == n_calls[0] and kinds.count("item") == n_items[0]
    # every link inside a page points at a page of the report
    for page in pages.values():
        for target in re.findall(r'href="#([^"]*)"', page["html"]):
            key = target.replace("&amp;", "&").split("#")[0]
            assert key in pages, key
        assert "<script>window" not in page["html"]
    # the same views render the same content as the web app (minus the vote form)
    v = Views(store)
    overview = v.page(f"/run/{run_id}").html
    assert overview.replace('href="/', 'href="#/') == pages[f"/run/{run_id}"]["html"]
    assert HOSTILE not in html


def test_every_interface_still_checks_the_host(run):
    """`--host 0.0.0.0` accepts this machine's names and the ones given, not any Host header
    (DNS rebinding: a page on evil.example resolving to this machine reads nothing)."""
    import http.client
    import socket
    import subprocess

    from conftest import BAKEOFF, wait_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [*BAKEOFF, "ui", "--db", str(run[0]), "--host", "0.0.0.0", "--port", str(port)]
    p = subprocess.Popen([*cmd, "--allow-host", "bakeoff.lan"], stderr=subprocess.PIPE, text=True)

    def status(host: str) -> int:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            con.request("GET", "/", headers={"Host": host})
            return con.getresponse().status
        finally:
            con.close()

    def up() -> bool:
        try:
            return status(f"127.0.0.1:{port}") == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30)
        assert status(f"localhost:{port}") == 200
        assert status(f"bakeoff.lan:{port}") == 200
        assert status(f"{socket.gethostname()}:{port}") == 200
        assert status(f"evil.example:{port}") == 421
        assert status(f"bakeoff.lan.evil.example:{port}") == 421
    finally:
        p.terminate()
        p.communicate(timeout=10)
