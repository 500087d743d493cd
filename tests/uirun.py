"""A real run for the UI tests: fake providers on loopback, one of which answers with hostile
markup, two suites, the fidelity audit. Used by test_ui.py and test_browser.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import re
import socket
import threading
from pathlib import Path

from aiohttp import web

from bakeoff.audit import run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute
from bakeoff.store import Store
from bakeoff.ui import make_app

HOSTILE = (
    '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
    '[click me](javascript:window.__pwned=3) <a href="javascript:window.__pwned=4">link</a> '
    '<iframe src="javascript:window.__pwned=5"></iframe> The answer is 7.'
)

LINEUP = f"""
reference: ref
defaults: {{temperature: 0, max_tokens: 48}}
run: {{suites: [arith, instructions], limit: 6}}
audit: {{regimes: [greedy], budget: 10, batch: 5}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: echo, ttft_ms: 2, itl_ms: 1}}, price: {{input_per_m: 0.1, output_per_m: 0.2}}}}
  - {{name: twin, provider: fake, fake: {{mode: echo, ttft_ms: 1, itl_ms: 1}}, price: {{input_per_m: 0.2, output_per_m: 0.4}}}}
  - name: evil
    provider: fake
    fake: {{mode: fixed, reply: {json.dumps(HOSTILE)}}}
    price: {{input_per_m: 0.05, output_per_m: 0.1}}
  - {{name: flaky, provider: fake, fake: {{mode: echo, faults: {{server_error: 0.4}}, seed: 3}}, retry: {{max_retries: 0}}}}
"""


def winner_lineup(n: int = 12) -> str:
    """A lineup whose best cells are known by construction (the browser tests check the marks):
    `ref`, `cheap` and `fast` answer every arith item right, `mid` and `flaky` half of them,
    `wrong` none (a failed call is not a wrong answer: `flaky`'s score is over what it answered). `cheap` costs a tenth of `ref` (the best $/correct; the only endpoint on the quality × cost
    front: the cheapest, `wrong`, is found different by the audit), `fast` has the lowest TTFT and the most tok/s (alone on
    the quality × speed front), `flaky` needs retries (half its attempts fail)."""
    from bakeoff.suites.arith import Arith

    items = Arith().items(seed=0, n=n)
    right = {it.messages[-1]["content"]: f"The answer is {it.target}." for it in items}
    half = {
        it.messages[-1]["content"]: f"The answer is {it.target if i % 2 else it.target + 1}."
        for i, it in enumerate(items)
    }

    def ep(name: str, script: dict[str, str] | None, price: float, **fake: object) -> str:
        spec = {"mode": "script", "script": script} if script else {"mode": "echo"}
        # `fast`'s 1 ms against the others' 50: the fake provider runs in the client's event loop,
        # and under coverage with a model server busy beside it a 1-vs-20 ms gap was lost to the
        # loop's stalls once (`flaky` measured fastest)
        spec = {"ttft_ms": 50, "itl_ms": 5, **spec, **fake}
        return json.dumps(
            {
                "name": name,
                "provider": "fake",
                "fake": spec,
                "price": {"input_per_m": price, "output_per_m": 2 * price},
                "retry": {"max_retries": 2, "backoff_base_s": 0.001},
            }
        )

    eps = [
        ep("ref", right, 1.0),
        ep("cheap", right, 0.1),
        ep("fast", right, 2.0, ttft_ms=1, itl_ms=0.5),
        ep("mid", half, 0.5),
        ep("wrong", None, 0.01),
        ep("flaky", half, 1.0, faults={"server_error": 0.5}, seed=4),
    ]
    return (
        "reference: ref\ndefaults: {temperature: 0, max_tokens: 48}\n"
        f"run: {{suites: [arith], limit: {n}, probe: false}}\n"
        "endpoints:\n" + "".join(f"  - {e}\n" for e in eps)
    )


def make_run(db: Path | str, text: str = LINEUP, *, cache: bool = False) -> str:
    """Run the lineup into `db` (in a thread of its own: Playwright's sync API keeps an event loop
    running in the test's thread). `cache`: replay what an earlier run with the same requests got."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_make_run, db, text, cache).result()


def _make_run(db: Path | str, text: str, cache: bool = False) -> str:
    lineup = parse_lineup(text)
    store = Store(db)
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=cache), after=after))
    store.close()
    return run_id


def report_pages(path: Path) -> dict[str, dict[str, str]]:
    """The pages stored inside a report file, decoded as the browser does."""
    html = path.read_text()
    m = re.search(r'<script type="application/octet-stream" id="pages"[^>]*>([^<]*)</script>', html)
    assert m, "no pages in the report"
    return json.loads(gzip.decompress(base64.b64decode(m.group(1))))


class Server:
    """The real aiohttp app on a loopback port, in a thread, with the Host check `bakeoff ui` sets
    for 127.0.0.1."""

    def __init__(self, db: Path | str) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        allowed = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.runner = web.AppRunner(make_app(str(db), allowed_hosts=allowed))
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", self.port)
            self.loop.run_until_complete(site.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def get(self, path: str, host: str | None = None, method: str = "GET", body: str | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Host": host or f"127.0.0.1:{self.port}"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read().decode(errors="replace")
        c.close()
        return r.status, dict(r.getheaders()), data

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def crawl(server: Server, run_id: str, limit: int = 60) -> set[str]:
    """Follow every internal link from a run's overview (up to `limit` pages), each answering 200;
    the kinds of page seen (`suite`, `item`, `call`, ...)."""
    kind = lambda p: re.sub(r"\?.*", "", p).rsplit("/", 1)[-1]  # noqa: E731
    seen, todo = set(), [f"/run/{run_id}"]
    while todo and len(seen) < limit:
        # a page of a kind not seen yet first: the overview's many sort and filter links would
        # otherwise use up the limit before the first call page
        kinds = {kind(p) for p in seen}
        path = todo.pop(next((i for i, p in enumerate(todo) if kind(p) not in kinds), 0))
        if path in seen:
            continue
        seen.add(path)
        status, _, html = server.get(path.replace("&amp;", "&"))
        assert status == 200, path
        todo += [
            link
            for link in re.findall(r'href="(/[^"#]*)"', html)
            if not link.startswith("/static") and link not in seen
        ]
    return {kind(p) for p in seen}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def many_lineup(tmp: Path, second: bool = False) -> str:
    """Six endpoints over arith, instructions and tools (12 items each: the tools suite's sequential
    conversations among them), answering from scripts with known outcomes: `ref` and `twin` right
    everywhere, `half` right on even items only, `mini` wrong everywhere, `flaky` right but failing
    40% of calls (no retries), `evil` with hostile markup. `second`: the lineup after a change —
    `mini` right everywhere (a gain), `half` wrong everywhere (a loss). For the suite, item and
    compare pages."""
    from bakeoff.plugins import suites as all_suites
    from bakeoff.runs import suite_items

    head = (
        "reference: ref\n"
        "defaults: {temperature: 0, max_tokens: 64}\n"
        "run: {suites: [arith, instructions, tools], limit: 12, probe: false}\n"
        "audit: {regimes: [greedy], budget: 10, batch: 5}\n"
        "endpoints:\n"
    )
    probe = parse_lineup(head + "  - {name: ref, provider: fake}\n")
    right: dict[str, object] = {}
    half: dict[str, object] = {}
    for name in ("arith", "instructions", "tools"):
        suite = all_suites()[name]
        for i, it in enumerate(suite_items(probe, name)):
            user = [m["content"] for m in it.messages or [] if m["role"] == "user"][-1]
            good = str(it.target) if name == "arith" else suite.reference_reply(it).model_dump()
            right[user] = good
            if i % 2 == 0:
                half[user] = good
    files = {}
    for key, script in (("right", right), ("half", half)):
        files[key] = tmp / f"{key}.json"
        files[key].write_text(json.dumps(script))

    def scripted(name: str, key: str, fake: str = "", more: str = "") -> str:
        return (
            f"  - {{name: {name}, provider: fake, fake: {{mode: script, "
            f"script_file: '{files[key]}', reply: 'I do not know.', ttft_ms: 2, itl_ms: 1{fake}}}, "
            f"price: {{input_per_m: 0.3, output_per_m: 0.6}}{more}}}\n"
        )

    def wrong(name: str) -> str:
        return f"  - {{name: {name}, provider: fake, fake: {{mode: fixed, reply: 'I do not know.'}}}}\n"

    return (
        head
        + scripted("ref", "right")
        + scripted("twin", "right")
        + (wrong("half") if second else scripted("half", "half"))
        + (scripted("mini", "right") if second else wrong("mini"))
        + scripted(
            "flaky", "right", ", faults: {server_error: 0.4}, seed: 3", ", retry: {max_retries: 0}"
        )
        + f"  - {{name: evil, provider: fake, fake: {{mode: fixed, reply: {json.dumps(HOSTILE)}}}}}\n"
    )
