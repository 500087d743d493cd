"""Several watcher processes on one watch: each check is made once (a lease in the store). The
store's claim, take-over, renewal and guarded finish on SQLite and PostgreSQL; a check held by a
live watcher left to it by `bakeoff watch --once`, one whose holder is gone taken over; and two
`bakeoff watch --every` processes started at once on the same slot: one check stored."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing

from bakeoff.store import Store, WatchCheck
from bakeoff.watch import Watch, WatchSettings, make_check
from bakeoff.watch._lease import gone, me
from conftest import BAKEOFF, bakeoff, wait_for

HOST = socket.gethostname()


def _check(owner: str | None, until: float | None) -> WatchCheck:
    return WatchCheck(1, None, None, "running", 0.0, None, owner, until)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_one_claim_wins_and_only_the_holder_renews_or_finishes(db_target):
    a, b = Store(db_target), Store(db_target)
    with closing(a), closing(b):
        a.ensure_watch("w", 0.0, "{}", "now")
        later = time.time() + 300
        won = [
            a.claim_check("w", 1, 0, 0.0, "h:1:a", later),
            b.claim_check("w", 1, 0, 0.0, "h:2:b", later),
        ]
        assert won == [True, False]
        (row,) = b.watch_checks("w")
        assert (row.owner, row.status) == ("h:1:a", "running") and row.lease_until == later
        assert not b.renew_lease("w", 1, "h:2:b", later + 60)
        assert a.renew_lease("w", 1, "h:1:a", later + 60)
        assert not b.take_over_check("w", 1, "h:2:b", later, prior="h:9:z")  # stale view: refused
        assert not b.finish_check("w", 1, 1.0, [], [], owner="h:2:b")
        assert b.take_over_check("w", 1, "h:2:b", later, prior="h:1:a")  # its holder judged gone
        assert not a.finish_check("w", 1, 1.0, [], [], owner="h:1:a")  # the old holder: nothing
        assert b.finish_check("w", 1, 1.0, [], [], owner="h:2:b")
        assert [c.status for c in a.watch_checks("w")] == ["done"]


def test_a_holder_is_gone_when_its_lease_ran_out_or_its_process_is():
    now = time.time()
    assert not gone(_check(me(), now + 60), now)  # this process, within its lease
    assert gone(_check(me(), now - 1), now)  # its lease ran out
    assert gone(_check(f"{HOST}:{_dead_pid()}:t", now + 60), now)  # this host, no such process
    assert not gone(_check("elsewhere:1:t", now + 60), now)  # another host: its lease decides
    assert gone(_check(None, None), now)  # a check begun before leases existed


def _lineup(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(
        "endpoints:\n  - {name: slow, provider: fake, max_concurrency: 2, fake: {itl_ms: 5}}\n"
    )
    return path


def test_once_leaves_a_held_check_to_its_holder_and_takes_over_one_whose_holder_is_gone(tmp_path):
    db = tmp_path / "w.db"
    with closing(Store(db)) as store:
        store.ensure_watch("one", 0.0, '{"anchors": 4, "rotating": 0}', "now")
        store.claim_check("one", 1, None, 0.0, f"{HOST}:{_pre_pid()}:t", time.time() + 300)
    args = ["watch", "-c", str(_lineup(tmp_path)), "--once", "--db", str(db)]
    r = bakeoff(*args)
    assert r.returncode == 0 and "check 1: made by another watcher" in r.stdout, r.stderr
    with closing(Store(db)) as store:
        assert store.runs() == [] and store.watch_checks("one")[0].status == "running"
        store.take_over_check("one", 1, "elsewhere:1:t", time.time() - 1, f"{HOST}:{_pre_pid()}:t")
    r = bakeoff(*args)  # the other host's lease ran out: this watcher finishes the check
    assert r.returncode == 0 and "check 1 (run" in r.stdout, r.stdout + r.stderr
    with closing(Store(db)) as store:
        (check,) = store.watch_checks("one")
        assert check.status == "done" and len(store.runs()) == 1


def _pre_pid() -> int:
    """A live process on this host (the test's own parent: it outlives the test)."""
    return os.getppid()


def test_two_watchers_started_at_once_make_the_slot_once(tmp_path):
    """Two `bakeoff watch --every 1h` processes on one store, started together: the first slot's
    check is made once (one check row, one run), whichever won; both are then stopped."""
    db = tmp_path / "w.db"
    args = [*BAKEOFF, "watch", "-c", str(_lineup(tmp_path)), "--every", "1h", "--db", str(db)]
    args += ["--anchors", "16", "--rotating", "0"]
    with closing(Store(db)):
        pass  # the store made before both start (neither waits on the other's migrations)
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]

    def done() -> int:
        with closing(Store(db)) as store:
            return sum(c.status == "done" for c in store.watch_checks("one"))

    try:
        wait_for(lambda: done() == 1, timeout=120)
    finally:
        for p in procs:
            p.terminate()
        outs = [p.communicate(timeout=30) for p in procs]
    with closing(Store(db)) as store:
        checks = store.watch_checks("one")
        assert [(c.seq, c.slot, c.status) for c in checks] == [(1, 0, "done")], outs
        assert len(store.runs()) == 1
    assert not any("check 2" in o for o, _ in outs), outs


def test_the_holder_renews_its_lease_while_it_makes_the_check(tmp_path):
    """A lease of 0.6 s, renewed every 0.2 s by the heartbeat, over a check of several seconds
    (a slow fake): the row's lease time moves on while the check runs; the check is done."""
    db = str(tmp_path / "w.db")
    watch = Watch(db, _lineup(tmp_path), "one", WatchSettings(anchors=32, rotating=0), lease=0.6)
    seen: set[float] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.05):
            with closing(Store(db)) as store:
                seen.update(c.lease_until for c in store.watch_checks("one") if c.lease_until)

    with closing(Store(db)):
        pass
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        result = make_check(watch, now=0.0)
    finally:
        stop.set()
        t.join(10)
    assert result.held_by is None and len(result.steps) == 1
    assert len(seen) >= 2, seen  # claimed, then renewed at least once
