"""`bakeoff watch` over real loopback servers and a real store, under a simulated clock: a silent
switch of model is alarmed, a steady endpoint is not, a failed check is a gap, the schedule resumes
from the store (no check doubled, a missed slot made once), and a killed check is finished by the
next start into the same state as an uninterrupted one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest

from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.lineups import ProxySpec
from bakeoff.proxy import DistortionProxy
from bakeoff.store import Store
from bakeoff.watch import (
    DetectorSettings,
    Watch,
    WatchSettings,
    make_check,
    status,
    watch_every,
)
from conftest import BAKEOFF, bakeoff, wait_for

SIX_HOURS = 6 * 3600.0


class Switching:
    """An endpoint that serves one model (a fake echoing the prompt), then after `after` requests
    silently another (a fake with a fixed reply; for `for_calls` requests only, if given): a
    distortion proxy with `switch_to`, running in its own thread so that it outlives every check
    (a watched endpoint is not restarted by them)."""

    def __init__(self, after: int, for_calls: int | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        started = self._start(after, for_calls)
        self.url = asyncio.run_coroutine_threadsafe(started, self.loop).result(30)

    async def _start(self, after: int, for_calls: int | None) -> str:
        self.first, self.second = FakeServer(FakeConfig()), FakeServer(FakeConfig(mode="fixed"))
        a, b = await self.first.start(), await self.second.start()
        spec = ProxySpec(
            target="a", switch_to="b", switch_after_calls=after, switch_for_calls=for_calls
        )
        self.proxy = DistortionProxy(spec, a, upstream_model="m", switch_url=b, switch_model="m")
        return await self.proxy.start()

    async def _stop(self) -> None:
        await self.proxy.stop()
        await self.first.stop()
        await self.second.stop()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def switching():
    made: list[Switching] = []

    def make(after: int, for_calls: int | None = None) -> Switching:
        made.append(Switching(after, for_calls))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _lineup(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "watched.yaml"
    path.write_text(
        "endpoints:\n"
        "  - {name: steady, provider: fake}\n"
        f"  - {{name: switched, base_url: '{url}', model: m}}\n" + extra
    )
    return path


class Clock:
    """The watch's clock: `wait` moves it on; it asks to stop after `checks` checks."""

    def __init__(self, checks: int, t: float = 1_700_000_000.0) -> None:
        self.t, self.checks, self.seen = t, checks, []

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        if len(self.seen) >= self.checks:
            return True
        self.t += seconds
        return False


SMALL = WatchSettings(anchors=8, rotating=2, detector=DetectorSettings(baseline_checks=3))


def test_a_silent_switch_is_alarmed_at_the_first_check_after_it_and_a_steady_twin_never(
    tmp_path, switching, db_target
):
    """Every 6h on the simulated clock, 10 checks of 10 prompts: the endpoint switches model after
    its 5th check; the alarm comes at the 6th, the steady endpoint raises none. Each check is an
    ordinary complete run in the store, made at its slot's time."""
    served = switching(after=5 * 10)
    path = _lineup(tmp_path, served.url)
    clock = Clock(checks=10)
    watch = Watch(db_target, path, "w", SMALL)
    watch_every(watch, every=SIX_HOURS, now=clock.now, wait=clock.wait, on_check=clock.seen.append)
    assert [r.seq for r in clock.seen] == list(range(1, 11))
    by = {
        ep: [s for r in clock.seen for s in r.steps if s.endpoint == ep]
        for ep in ("steady", "switched")
    }
    assert not any(s.step.alarm for s in by["steady"])
    first = next(i for i, s in enumerate(by["switched"], 1) if s.step.alarm)
    assert first == 6 and by["switched"][5].step.changed == 8  # every anchor changed
    assert [s.step.phase for s in by["switched"][:3]] == ["baseline"] * 3
    with closing(Store(db_target)) as store:
        checks = store.watch_checks("w")
        origin = store.watch("w").origin
        assert [c.slot for c in checks] == list(range(10))
        assert len({c.run_id for c in checks}) == 10  # each check its own run
        assert [c.started_at for c in checks] == [origin + k * SIX_HOURS for k in range(10)]
        for c in checks:
            assert store.run(c.run_id)["status"] == "complete"
            assert len(store.calls(c.run_id)) == 2 * 10
        rows = {r.endpoint: r for r in status(store)}
    assert rows["switched"].phase == "alarm" and rows["steady"].phase == "watching"
    assert rows["steady"].statistic < 1  # no change: the statistic sinks


def test_the_schedule_resumes_from_the_store_no_check_doubled_a_missed_slot_made_once(
    tmp_path, switching
):
    served = switching(after=10**6)
    path = _lineup(tmp_path, served.url)
    db = str(tmp_path / "w.db")
    watch = Watch(db, path, "w", SMALL)
    clock = Clock(checks=2)
    watch_every(watch, every=SIX_HOURS, now=clock.now, wait=clock.wait, on_check=clock.seen.append)
    assert len(clock.seen) == 2
    # a restart within the same slot: nothing is due, no check is made
    again = Clock(checks=0, t=clock.t)
    watch_every(watch, every=SIX_HOURS, now=again.now, wait=again.wait, on_check=again.seen.append)
    assert again.seen == []
    # the machine slept through five slots: one check, in the newest slot, not five
    late = Clock(checks=1, t=clock.t + 5.5 * SIX_HOURS)
    watch_every(watch, every=SIX_HOURS, now=late.now, wait=late.wait, on_check=late.seen.append)
    with closing(Store(db)) as store:
        slots = [c.slot for c in store.watch_checks("w")]
    assert slots == [0, 1, 6] and len(late.seen) == 1


def test_a_failed_check_is_a_gap_never_evidence(tmp_path, switching):
    """An endpoint answering 500 to everything: every check is a gap (its cause said), its baseline
    never forms and it never alarms; the other endpoint's checks go on."""
    served = switching(after=10**6)
    down = (
        "  - name: down\n    provider: fake\n    fake: {faults: {server_error: 1.0}}\n"
        "    retry: {max_retries: 0}\n"
    )
    path = _lineup(tmp_path, served.url, down)
    watch = Watch(str(tmp_path / "w.db"), path, "w", SMALL)
    results = [make_check(watch, now=1000.0 + k) for k in range(4)]
    gaps = [s for r in results for s in r.steps if s.endpoint == "down"]
    assert all(s.step.gap and not s.step.alarm for s in gaps)
    assert "0/8 anchors answered (server_error)" in (gaps[0].why or "")
    assert gaps[-1].state.gaps == 4 and gaps[-1].state.phase == "baseline"
    steady = [s for r in results for s in r.steps if s.endpoint == "steady"]
    assert steady[-1].state.phase == "watching" and not any(s.step.gap for s in steady)


def test_once_exit_codes_gap_alarm_and_error(tmp_path, switching):
    """`bakeoff watch --once`, as cron runs it: 4 while an endpoint's check is a gap, 5 once an
    endpoint is in alarm (over the gap), 2 for a lineup that cannot run (no check stored)."""
    served = switching(after=2 * 24)  # two honest checks of 24 anchors, then another model
    down = "  - name: down\n    provider: fake\n    fake: {faults: {server_error: 1.0}}\n"
    down += "    retry: {max_retries: 0}\n"
    path = _lineup(tmp_path, served.url, down)
    db = str(tmp_path / "w.db")
    args = ["watch", "-c", str(path), "--once", "--db", db, "--rotating", "0"]
    args += ["--baseline-checks", "2"]
    codes = []
    for _ in range(3):
        r = bakeoff(*args)
        codes.append(r.returncode)
    assert codes == [4, 4, 5], r.stdout + r.stderr
    assert (
        "ALARM watch watched check 3" in r.stdout and "switched: 24/24 anchors changed" in r.stdout
    )
    assert "average run length to a false alarm >= 1000 checks" in r.stderr
    assert "down: 24 calls, <= " in r.stderr and " + 1,152 output tokens, no price" in r.stderr
    assert '-> "I don\'t know."' in r.stdout  # the evidence: answers before and after
    st = bakeoff("watch", "status", "--db", db)
    assert st.returncode == 0
    line = next(x for x in st.stdout.splitlines() if "switched" in x)
    assert "alarm" in line and "#3" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "endpoints:\n  - {name: x, provider: openai, model: m, api_key_env: NO_SUCH_API_KEY}\n"
    )
    r = bakeoff("watch", "-c", str(bad), "--once", "--db", db, env={"NO_SUCH_API_KEY": ""})
    assert r.returncode == 2, r.stderr
    with closing(Store(db)) as store:
        assert store.watch_checks("bad") == []


def test_a_killed_check_is_finished_by_the_next_start_as_if_never_killed(tmp_path):
    """`kill -9` in the middle of a check's calls, then the same command again: the check is made
    once (the same run, resumed; no prompt asked twice), and each endpoint's detector ends in the
    state of an uninterrupted watch."""
    lineup = tmp_path / "slow.yaml"
    lineup.write_text(
        "endpoints:\n  - {name: slow, provider: fake, max_concurrency: 2, fake: {itl_ms: 5}}\n"
    )
    db = tmp_path / "k.db"
    args = ["watch", "-c", str(lineup), "--once", "--db", str(db), "--name", "k"]
    proc = subprocess.Popen([*BAKEOFF, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def some_calls() -> bool:
        if not db.exists():
            return False
        with closing(Store(db)) as store:
            runs = store.runs()
            return bool(runs) and 0 < len(store.calls(runs[0]["id"])) < 32

    try:
        wait_for(some_calls, timeout=60, interval=0.02)
    finally:  # killed whatever happened (a leaked Popen fails a later test, under -W error)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    with closing(Store(db)) as store:
        (killed,) = store.watch_checks("k")
        assert killed.status == "running"
        run_id = store.runs()[0]["id"]
    assert bakeoff(*args).returncode == 0
    fresh = tmp_path / "u.db"
    assert (
        bakeoff("watch", "-c", str(lineup), "--once", "--db", str(fresh), "--name", "k").returncode
        == 0
    )
    with closing(Store(db)) as store, closing(Store(fresh)) as other:
        (check,) = store.watch_checks("k")
        assert check.status == "done" and check.run_id == run_id  # resumed, not made anew
        calls = store.calls(run_id)
        assert len(calls) == 32 and len({c["item_id"] for c in calls}) == 32
        mine, theirs = store.watch_steps("k"), other.watch_steps("k")
        assert [s.state_json for s in mine] == [s.state_json for s in theirs]


def test_every_checks_until_sigterm_and_a_restart_waits_for_the_next_slot(tmp_path):
    """`--every 1h` on the wall clock: the first check at once, then it waits; SIGTERM ends it with
    130 and the check stored; started again within the hour it makes no check (it waits again)."""
    lineup = tmp_path / "one.yaml"
    lineup.write_text("endpoints:\n  - {name: steady, provider: fake}\n")
    db = tmp_path / "e.db"
    args = [*BAKEOFF, "watch", "-c", str(lineup), "--every", "1h", "--db", str(db)]

    def done_checks() -> int:
        if not db.exists():
            return 0
        with closing(Store(db)) as store:
            return sum(c.status == "done" for c in store.watch_checks("one"))

    for round_ in range(2):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        promise = proc.stderr.readline()  # printed once it runs, before the first check is due
        assert "average run length to a false alarm >= 1000 checks (42 days" in promise
        if round_ == 0:
            wait_for(lambda: done_checks() == 1, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        assert done_checks() == 1


def test_failed_calls_of_a_partly_failing_check_are_left_out_never_counted_as_changes(tmp_path):
    """An endpoint failing 30% of its calls (500s, no retry): the anchors it answered are compared,
    the failed ones are neither changes nor agreements; over 8 checks no alarm, no change."""
    flaky = tmp_path / "flaky.yaml"
    flaky.write_text(
        "endpoints:\n  - name: flaky\n    provider: fake\n"
        "    fake: {faults: {server_error: 0.3}, seed: 3}\n    retry: {max_retries: 0}\n"
    )
    watch = Watch(str(tmp_path / "f.db"), flaky, "f", SMALL)
    steps = [make_check(watch, now=float(k)).steps[0] for k in range(8)]
    answered = [s for s in steps if not s.step.gap]
    assert len(answered) >= 6 and any(s.step.n < 8 for s in answered[1:])
    assert all(s.step.changed == 0 and not s.step.alarm for s in answered)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--once", "--every", "6h"], "one of --once or --every"),
        ([], "one of --once or --every"),
        (["--every", "soon"], "--every 'soon': give a duration such as 90s, 30m, 6h or 1d"),
        (["--every", "0h"], "--every '0h'"),
    ],
)
def test_a_bad_command_line_is_exit_2_and_says_why(tmp_path, args, said):
    lineup = tmp_path / "one.yaml"
    lineup.write_text("endpoints:\n  - {name: steady, provider: fake}\n")
    r = bakeoff("watch", "-c", str(lineup), "--db", str(tmp_path / "x.db"), *args)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert not (tmp_path / "x.db").exists()


def test_an_acknowledged_change_re_forms_the_baseline_and_keeps_the_history(tmp_path, switching):
    """Alarm at check 5 (the switch after 4); `bakeoff watch ack switched`: checks 6-8 form a new
    baseline on what the endpoint serves now, 9-10 are watched against it — no alarm, no change —
    while the steady endpoint's detector goes on untouched. Every step stays in the store."""
    served = switching(after=4 * 10)
    path = _lineup(tmp_path, served.url)
    db = str(tmp_path / "w.db")
    watch = Watch(db, path, "w", SMALL)
    first = [make_check(watch, now=float(k)) for k in range(5)]
    assert [s.step.alarm for s in first[-1].steps] == [False, True]
    r = bakeoff("watch", "ack", "switched", "--name", "w", "--db", db)
    assert r.returncode == 0 and "acknowledged after check 5" in r.stdout, r.stderr
    r = bakeoff("watch", "ack", "nobody", "--name", "w", "--db", db)
    assert r.returncode == 2 and "has checked no endpoint 'nobody'" in r.stderr
    later = [make_check(watch, now=float(k)) for k in range(5, 10)]
    switched = [r.steps[1] for r in later]
    assert [s.step.phase for s in switched] == ["baseline"] * 3 + ["watching"] * 2
    assert all(s.step.changed == 0 and not s.step.alarm for s in switched)
    steady = [r.steps[0] for r in later]
    assert steady[-1].state.checks == 7 and steady[-1].state.baseline_seen == 3
    with closing(Store(db)) as store:
        assert len(store.watch_steps("w")) == 2 * 10
        epochs = {a.epoch for a in store.baseline_answers("w") if a.endpoint == "switched"}
    assert epochs == {0, 1}
