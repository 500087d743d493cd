"""`bakeoff watch --alert-url`: the webhook against a real loopback HTTP receiver — the body's
shape, retries on 5xx with a bounded backoff, none on 4xx, an unreachable receiver a classified
failure (never the watch's end), and the key sent only in the bearer header: never in the body, the
store or the command's output."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from bakeoff.watch import (
    AlertTarget,
    CheckResult,
    DetectorState,
    EndpointStep,
    Step,
    new_alarms,
    send,
)
from conftest import bakeoff
from test_watch import Switching, _lineup

KEY = "sk-hook-7d1e9f0a2b3c4d5e6f"
SECRET_PATH = "hooks/T0SECRET/B0PATH"


class Receiver:
    """A webhook receiver on loopback, in its own thread: answers each POST with the next status
    of `statuses` (200 once they are used up) and keeps what it was sent."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/{SECRET_PATH}"

    async def _hook(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status == 200 else "busy")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _body() -> dict[str, object]:
    return {"event": "alarm", "endpoint": "e"}


def test_5xx_is_retried_with_a_bounded_backoff_4xx_is_not_and_no_answer_is_classified(receiver):
    slept: list[float] = []
    r = receiver([503, 502, 200])
    target = AlertTarget(r.url, KEY, retries=3, backoff=1.0, max_backoff=1.5)
    ok = send(target, _body(), "e", slept.append)
    assert ok.ok and ok.attempts == 3 and slept == [1.0, 1.5]  # doubled, then capped
    assert [h["Authorization"] for h, _ in r.got] == [f"Bearer {KEY}"] * 3

    r = receiver([500] * 10)
    failed = send(AlertTarget(r.url, KEY, retries=2, backoff=0.0), _body(), "e", slept.append)
    assert (failed.ok, failed.attempts, failed.error_class) == (False, 3, "alert_server_error")
    assert len(r.got) == 3

    r = receiver([401, 200])
    refused = send(AlertTarget(r.url, KEY, retries=3, backoff=0.0), _body(), "e", slept.append)
    assert (refused.attempts, refused.error_class) == (1, "alert_rejected") and len(r.got) == 1

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/{SECRET_PATH}"
    gone = send(AlertTarget(dead, KEY, retries=1, backoff=0.0, timeout=5), _body(), "e")
    assert (gone.ok, gone.attempts, gone.error_class) == (False, 2, "alert_unreachable")
    for o in (failed, refused, gone):  # the class's detail names neither the key nor the path
        assert KEY not in (o.detail or "") and "T0SECRET" not in (o.detail or "")
    assert "T0SECRET" not in repr(target) and KEY not in repr(target)


def test_only_a_new_alarm_is_alerted():
    state = DetectorState()
    raised = Step(phase="alarm", n=8, changed=8, statistic=5e3, threshold=1e3, alarm=True)
    still = Step(phase="alarm", n=8, changed=8, threshold=1e3, alarm=True)
    calm = Step(phase="watching", n=8, changed=0, statistic=0.1, threshold=1e3)
    result = CheckResult(7, None, "r1")
    result.steps += [
        EndpointStep(e, s, state) for e, s in (("a", raised), ("b", still), ("c", calm))
    ]
    assert [s.endpoint for s in new_alarms(result)] == ["a"]


def test_an_alarm_posts_its_evidence_once_and_the_key_goes_nowhere_else(tmp_path, receiver):
    """`--once` three times (baseline of 2 checks, then the switch): the third check alarms, and the
    receiver gets one alert (after a 503, retried): the endpoint, what changed, the check's run and
    its UI page. The key is in the bearer header only — not in the body, the store or the output;
    the hook's secret path is not printed either. A fourth check (still in alarm) sends nothing."""
    served = Switching(after=2 * 24)
    try:
        r = receiver([503])
        path = _lineup(tmp_path, served.url)
        db = tmp_path / "w.db"
        args = ["watch", "-c", str(path), "--once", "--db", str(db), "--rotating", "0"]
        args += ["--baseline-checks", "2", "--alert-url", r.url, "--alert-key-env", "HOOK_KEY"]
        runs = [bakeoff(*args, env={"HOOK_KEY": KEY}) for _ in range(4)]
    finally:
        served.close()
    assert [x.returncode for x in runs] == [0, 0, 5, 5], runs[-1].stderr
    assert len(r.got) == 2  # the 503, then the retry; nothing at the fourth check
    headers, raw = r.got[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    body = orjson.loads(raw)
    assert body["watch"] == "watched" and body["endpoint"] == "switched" and body["check"] == 3
    change = body["change"]
    assert change["anchors_changed"] == 24 and change["anchors_compared"] == 24
    assert change["statistic"] >= change["threshold"] == 1000
    run_id = body["evidence"]["run_id"]
    assert body["evidence"]["ui_path"] == f"/run/{run_id}" and f"(run {run_id})" in runs[2].stdout
    assert len(body["evidence"]["changed_anchors"]) == 3
    assert "alert for switched sent to http://127.0.0.1" in runs[2].stderr
    assert KEY.encode() not in raw
    for x in runs:
        assert KEY not in x.stdout + x.stderr and "T0SECRET" not in x.stdout + x.stderr
    for f in Path(tmp_path).glob("w.db*"):
        assert KEY.encode() not in f.read_bytes()


def test_a_bad_alert_option_is_exit_2_before_any_check(tmp_path):
    lineup = tmp_path / "one.yaml"
    lineup.write_text("endpoints:\n  - {name: steady, provider: fake}\n")
    base = ["watch", "-c", str(lineup), "--once", "--db", str(tmp_path / "x.db")]
    r = bakeoff(*base, "--alert-url", "http://127.0.0.1:9/h", "--alert-key-env", "NO_HOOK_KEY")
    assert r.returncode == 2 and "NO_HOOK_KEY: that environment variable is not set" in r.stderr
    r = bakeoff(*base, "--alert-key-env", "HOOK_KEY", env={"HOOK_KEY": KEY})
    assert r.returncode == 2 and "give both" in r.stderr
    assert not (tmp_path / "x.db").exists()
