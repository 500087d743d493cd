"""The UI at scale: a real run of about 10,000 calls against fake providers on loopback (two suites,
the fidelity audit, arena votes from people and from an LLM judge, a perf sweep linked to the run),
then every kind of page fetched from a real `bakeoff ui` process, and the report written.

Prints, per page kind, the server's time to answer (median and worst over the pages fetched), the
first-load time in a real headless Chromium (the HTTP cache cleared before each page: from the
navigation's start until the page says it is ready), and the report's size.
Targets: every page answered < 1 s (issue #6) and first-loaded in Chromium <= 0.5 s (issue #22) on
this machine, the report < 20 MB.

    .venv/bin/python bench/ui_scale.py [--calls 10000] [--keep DIR [--reuse]] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bakeoff.arena import judge_pairs, record_human_vote
from bakeoff.audit import run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.perf import PerfOptions, run_perf
from bakeoff.runs import RunOptions, create_run, execute, summarize, summary_of
from bakeoff.store import Store
from bakeoff.ui import write_report

ENDPOINTS = """
  - {name: ref, provider: fake, fake: {mode: echo, itl_ms: 0}, max_concurrency: 32, price: {input_per_m: 0.1, output_per_m: 0.2}}
  - {name: twin, provider: fake, fake: {mode: echo, itl_ms: 0}, max_concurrency: 32, price: {input_per_m: 0.2, output_per_m: 0.4}}
  - {name: terse, provider: fake, fake: {mode: fixed, reply: "The answer is 7. <b>bold</b>"}, max_concurrency: 32, price: {input_per_m: 0.05, output_per_m: 0.1}}
  - {name: flaky, provider: fake, fake: {mode: echo, faults: {server_error: 0.05, truncate: 0.05}, seed: 1}, max_concurrency: 32, retry: {max_retries: 1, backoff_base_s: 0.001}}
  - {name: judge, provider: fake, fake: {mode: fixed, reply: "A"}, max_concurrency: 32}
"""


def lineup_text(per_suite: int, budget: int) -> str:
    return f"""
reference: ref
defaults: {{temperature: 0, max_tokens: 64}}
run: {{suites: [arith, instructions], limit: {per_suite}, probe: false}}
audit: {{regimes: [greedy], budget: {budget}, batch: 50}}
endpoints:{ENDPOINTS}"""


def build(db: Path, calls: int) -> str:
    budget = 100
    audit_calls = budget * 5  # reference twice, four candidates once
    per_suite = max(1, (calls - audit_calls) // (5 * 2))
    lineup = parse_lineup(lineup_text(per_suite, budget))
    store = Store(db)
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    t = time.perf_counter()
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    n = store.db.execute("SELECT COUNT(*) FROM calls WHERE run_id = ?", (run_id,)).fetchone()[0]
    print(f"run {run_id}: {n} calls in {time.perf_counter() - t:.1f} s")
    # votes: 2,000 from "people" (random), 300 pairs from the judge (both orders each)
    rng = random.Random(0)
    pool = store.db.execute(
        "SELECT suite, item_id, GROUP_CONCAT(id) FROM calls WHERE run_id = ? AND status = 'ok'"
        " AND suite NOT LIKE 'fidelity.%' GROUP BY suite, item_id, repeat",
        (run_id,),
    ).fetchall()
    for _ in range(2000):
        ids = pool[rng.randrange(len(pool))][2].split(",")
        a, b = rng.sample(ids, 2)
        with contextlib.suppress(ValueError):
            record_human_vote(store, run_id, a, b, rng.choice(["left", "right", "tie"]))
    asyncio.run(judge_pairs(store, run_id, lineup, "judge", 300))
    # a perf sweep of one endpoint, linked to the run
    opts = PerfOptions(
        levels=[1, 4, 16],
        duration_s=2,
        warmup_s=0.2,
        cooldown_s=0.1,
        output_tokens=32,
        endpoints=["ref"],
        stop_at_saturation=False,
    )
    asyncio.run(run_perf(store, lineup, opts, run_id=run_id))
    t = time.perf_counter()
    summary_of(store, run_id)
    print(f"summary of {n} calls recomputed in {time.perf_counter() - t:.2f} s (uncached)")
    summarize(store, run_id)  # as `bakeoff run` does at its end: the pages read it from the store
    store.close()
    return run_id


def page_addresses(store: Store, run_id: str, other: str) -> dict[str, list[str]]:
    """The pages to time, by kind (the item and trace pages a random sample of 20)."""
    rng = random.Random(1)
    items = store.db.execute(
        "SELECT suite, item_id FROM items WHERE run_id = ?", (run_id,)
    ).fetchall()
    calls = [r[0] for r in store.db.execute("SELECT id FROM calls WHERE run_id = ?", (run_id,))]
    perf_id = store.db.execute("SELECT id FROM perf_runs WHERE run_id = ?", (run_id,)).fetchone()[0]
    q = urllib.parse.urlencode
    return {
        "runs list": ["/"],
        "overview": [f"/run/{run_id}"],
        "suite (all, page 1)": [
            f"/run/{run_id}/suite?name=arith",
            f"/run/{run_id}/suite?name=instructions",
        ],
        "suite (disagreements)": [f"/run/{run_id}/suite?name=arith&show=disagree"],
        "suite (last page)": [f"/run/{run_id}/suite?name=arith&page=999"],
        "item side by side": [
            f"/run/{run_id}/item?" + q({"suite": s, "id": i}) for s, i in rng.sample(items, 20)
        ],
        "call trace": [f"/run/{run_id}/call?id={c}" for c in rng.sample(calls, 20)],
        "audit": [f"/run/{run_id}/audit"],
        "arena (2,300 votes)": [f"/run/{run_id}/arena"],
        "perf": [f"/perf?id={perf_id}"],
        "compare": [f"/compare?a={other}&b={run_id}"],
    }


@contextlib.contextmanager
def ui_process(db: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff", "ui", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait()


def fetch_all(base: str, pages: dict[str, list[str]]) -> dict[str, list[float]]:
    """The server's time to answer each page (the whole body read)."""
    out: dict[str, list[float]] = {}
    for kind, urls in pages.items():
        for u in urls:
            t = time.perf_counter()
            with urllib.request.urlopen(base + u, timeout=60) as r:
                assert r.status == 200, u
                r.read()
            out.setdefault(kind, []).append(time.perf_counter() - t)
    return out


def first_loads(
    base: str, pages: dict[str, list[str]], per_kind: int = 5
) -> dict[str, list[float]]:
    """Each page's first load in Chromium, as a visitor with the UI open in a tab meets it: the
    HTTP cache cleared before each page (so its CSS and JS are fetched again), timed by the page
    itself from the navigation's start to `body[data-ready]` (set by app.js once the page is up)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        page.goto(base + "/")  # the tab, open on the UI (its renderer process started)
        for kind, urls in pages.items():
            for u in urls[:per_kind]:
                cdp.send("Network.clearBrowserCache")
                page.goto(base + u, wait_until="commit")
                page.wait_for_selector("body[data-ready]", timeout=60_000)
                ms = page.evaluate(
                    "performance.now() - performance.getEntriesByType('navigation')[0].startTime"
                )
                out.setdefault(kind, []).append(ms / 1000)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, help="Keep the database and report in this directory.")
    ap.add_argument("--no-browser", action="store_true", help="Server times only (no Chromium).")
    ap.add_argument(
        "--reuse", action="store_true", help="With --keep: time the runs already in DIR/scale.db."
    )
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bakeoff-ui-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "scale.db"
    if args.reuse and db.exists():
        store = Store(db)
        other, run_id = (r["id"] for r in sorted(store.runs(2), key=lambda r: r["created_at"])[:2])
        if (
            store.db.execute("SELECT COUNT(*) FROM calls WHERE run_id = ?", (other,)).fetchone()[0]
            > (
                store.db.execute(
                    "SELECT COUNT(*) FROM calls WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            )
        ):
            run_id, other = other, run_id
        print(f"reusing {db}: runs {run_id} and {other}")
    else:
        db.unlink(missing_ok=True)
        run_id = build(db, args.calls)
        other = build(db, max(600, args.calls // 10))  # a second, smaller run for compare
    pages = page_addresses(Store(db), run_id, other)
    with ui_process(db) as base:
        loads = {} if args.no_browser else first_loads(base, pages)
        times = fetch_all(base, pages)
    print(f"\n{'page':<26}{'pages':>6}{'median s':>10}{'worst s':>10}{'Chromium':>10}{'worst':>8}")
    worst = worst_load = 0.0
    for kind, ts in times.items():
        worst = max(worst, max(ts))
        row = f"{kind:<26}{len(ts):>6}{statistics.median(ts):>10.3f}{max(ts):>10.3f}"
        if kind in loads:
            worst_load = max(worst_load, max(loads[kind]))
            row += f"{statistics.median(loads[kind]):>10.3f}{max(loads[kind]):>8.3f}"
        print(row)
    print(f"slowest page: {worst:.3f} s (target < 1 s): {'OK' if worst < 1 else 'MISSED'}")
    if loads:
        ok = "OK" if worst_load <= 0.5 else "MISSED"
        print(f"slowest first load in Chromium: {worst_load:.3f} s (target <= 0.5 s): {ok}")
    store = Store(db)
    t = time.perf_counter()
    stats = write_report(store, run_id, tmp / "report.html")
    el = time.perf_counter() - t
    print(
        f"report: {stats.pages} pages, {stats.bytes / 1e6:.1f} MB on disk ({stats.raw_bytes / 1e6:.1f} MB"
        f" of page HTML before gzip), written in {el:.1f} s (target < 20 MB):"
        f" {'OK' if stats.bytes < 20e6 else 'MISSED'}"
    )
    print(f"files in {tmp}")


if __name__ == "__main__":
    main()
