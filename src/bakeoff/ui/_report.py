"""`bakeoff report RUN_ID -o report.html`: one self-contained, offline HTML file.

The report holds the same pages as the web app (overview, every suite and item side by side, every
call's trace, the audit, the arena's ratings, the run's perf runs), rendered by the same views, gzipped
and base64-encoded inside the file; a small script (inlined, like the CSS; the charts are inline SVG)
inflates them in the browser and shows the page named by the URL's `#`. Nothing is fetched: the page's
Content-Security-Policy allows no network at all."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
from markupsafe import Markup

from bakeoff.store import Store
from bakeoff.ui._render import url
from bakeoff.ui._views import NotFound, Views


@dataclass
class ReportStats:
    path: Path
    pages: int
    bytes: int
    raw_bytes: int


CONTENTS = re.compile(rb'<meta name="bakeoff-contents" content="([^"]*)">')


def report_contents(store: Store, run_id: str) -> str:
    """What may be added to a run after its report is written — arena votes, perf sweeps attached
    to it, recomputed audit verdicts — summed up in a string the report keeps: a report whose
    string is not the store's no longer shows everything."""
    votes = store.votes(run_id)
    perf = [f"{r['id']}:{r['status']}" for r in store.perf_runs_of(run_id)]
    stated = {k: v.to_json() for k, v in store.verdicts(run_id).items()}
    verdicts = orjson.dumps(stated, option=orjson.OPT_SORT_KEYS)
    last = votes[-1].id if votes else 0
    return (
        f"votes={len(votes)}/{last};perf={','.join(perf)};"
        f"verdicts={hashlib.sha256(verdicts).hexdigest()[:16]}"
    )


def report_is_stale(store: Store, run_id: str, path: str | Path) -> bool | None:
    """None when there is no report file at `path`; else whether it misses data the store now holds
    for the run (a file without the record, from an older bakeoff, counts as stale)."""
    p = Path(path)
    if not p.is_file():
        return None
    with p.open("rb") as f:
        head = f.read(4096)
    m = CONTENTS.search(head)
    return m is None or m.group(1).decode() != report_contents(store, run_id)


def report_addresses(store: Store, run_id: str) -> list[str]:
    """Every page of a run that goes into its report, the overview first."""
    base = f"/run/{run_id}"
    out = [url(base)]
    views = Views(store, report=True)
    rd = views.run(run_id)
    # each suite's list, and its filters against the reference for any endpoint and for each one
    # (what the suite page links to; the search and the other orders need the web app)
    filters: list[tuple[str | None, str | None]] = [(None, None)]
    if rd.lineup.reference:
        others = [None, *(e for e in rd.endpoints if e != rd.lineup.reference)]
        filters += [(f, ep) for ep in others for f in ("disagree", "differ", "worse", "better")]
    for s in rd.suites:
        out += [url(base + "/suite", name=s, show=f, ep=ep) for f, ep in filters]
    out += [url(base + "/audit"), url(base + "/arena")]
    for r in store.item_keys(run_id):
        out.append(url(base + "/item", suite=r["suite"], id=r["item_id"]))
    for call_id in store.call_ids(run_id):
        out.append(url(base + "/call", id=call_id))
    for r in store.perf_runs_of(run_id):
        out.append(url("/perf", id=r["id"]))
    return out


def write_report(
    store: Store,
    run_id: str,
    path: str | Path,
    on_page: Callable[[int, int], None] | None = None,
) -> ReportStats:
    """Render every page of the run into one HTML file at `path` (written atomically)."""
    views = Views(store, report=True)
    views.run(run_id)  # NotFound before any work
    contents = report_contents(store, run_id)  # before the pages: what is added meanwhile is missed
    addresses = report_addresses(store, run_id)
    # pages are compressed one by one as they are rendered: memory holds one page and the
    # compressed output, not every page and then their JSON (a run with one 240,000-chunk call
    # took 110 MB to report that way)
    gz = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed_parts = [gz.compress(b"{")]
    n_pages = raw_len = 0
    for i, address in enumerate(addresses):
        try:
            page = views.page(address)
        except NotFound:
            continue
        entry = (b"," if n_pages else b"") + orjson.dumps(address) + b":"
        entry += orjson.dumps({"title": page.title, "html": page.html})
        del page
        packed_parts.append(gz.compress(entry))
        raw_len += len(entry)
        n_pages += 1
        if on_page:
            on_page(i + 1, len(addresses))
    packed_parts += [gz.compress(b"}"), gz.flush()]
    packed = base64.b64encode(b"".join(packed_parts)).decode()
    del packed_parts
    static = resources.files("bakeoff.ui").joinpath("static")
    html = views.env.get_template("report.html").render(
        run_id=run_id,
        home=addresses[0],
        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        n_pages=n_pages,
        contents=contents,
        nonce=secrets.token_urlsafe(12),
        css=Markup(static.joinpath("app.css").read_text()),
        app_js=Markup(static.joinpath("app.js").read_text()),
        pages_b64=packed,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return ReportStats(out, n_pages, out.stat().st_size, raw_len + 2)
