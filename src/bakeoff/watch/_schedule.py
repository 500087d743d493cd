"""A watch's schedule and state: `--every` slots from the store (a restart resumes them; a missed
slot is made once, not once per slot missed; a check left running is finished first), and
`bakeoff watch status`.

Every time here is the watch's clock, given by the caller (`now`): the CLI's is the wall clock, a
test's a simulated one, so the detector and the store see check times, never the time a test took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

from bakeoff.runs import RegimeCost
from bakeoff.store import Store
from bakeoff.watch._check import CheckResult, Watch, WatchSettings, make_check, open_watch
from bakeoff.watch._cost import DAY_S, SKIPPED, actual, check_runs
from bakeoff.watch._detector import DetectorState

BUSY_POLL_S = 5.0
"""How often a watcher looks again at a check another one is making."""


def due(
    store: Store, name: str, origin: float, every: float, now: float
) -> tuple[bool, int, float]:
    """(whether a check is due now, its slot, when the next slot starts). The slot due is the
    newest whose time has come: slots missed while nothing ran (the machine asleep, the watcher
    stopped) are not made up one by one. A check left running is due at once, in its own slot."""
    checks = store.watch_checks(name)
    if checks and checks[-1].status == "running":
        return True, checks[-1].slot if checks[-1].slot is not None else -1, now
    last = max((c.slot for c in checks if c.slot is not None), default=-1)
    slot = math.floor((now - origin) / every)
    if slot > last:
        return True, slot, now
    return False, last + 1, origin + (last + 1) * every


def watch_every(
    watch: Watch,
    *,
    every: float,
    now: Callable[[], float],
    wait: Callable[[float], bool],
    on_check: Callable[[CheckResult], object] | None = None,
) -> None:
    """Check at every slot of `every` seconds from the watch's origin until `wait(seconds)` says to
    stop (returns True). The CLI's `wait` sleeps (SIGTERM ends it); a test's advances its clock.
    A check another watcher is making is left to it: this one looks again every few seconds (the
    check done, the next slot is waited for; its holder gone, it is taken over)."""
    if every <= 0:
        raise ValueError("every must be positive")
    told = 0  # the check last said to be another watcher's
    while True:
        with closing(Store(watch.db)) as store:
            open_watch(store, watch.name, now(), watch.new or WatchSettings())
            row = store.watch(watch.name)
            assert row is not None
            go, slot, at = due(store, watch.name, row.origin, every, now())
        if go:
            result = make_check(watch, now=now(), slot=slot)
            if result.held_by is None:
                if on_check is not None:
                    on_check(result)
                continue
            # another watcher makes this check: look again when its lease could have lapsed
            if watch.log is not None and result.seq != told:
                watch.log(
                    f"watch {watch.name}: check {result.seq} is being made by another watcher "
                    f"({result.held_by}); this one waits"
                )
            told = result.seq
            if wait(min(BUSY_POLL_S, watch.lease)):
                return
            continue
        if wait(max(at - now(), 0.0)):
            return


@dataclass(frozen=True)
class EndpointStatus:
    watch: str
    endpoint: str
    last_seq: int
    last_at: float | None
    """The watch's clock when its last check started."""
    phase: str
    n: int
    changed: int
    statistic: float | None
    threshold: float
    p0: float | None
    checks: int
    gaps: int
    why: str | None
    cost_24h: RegimeCost | None = None
    """What its checks begun in the last 24 hours cost (their stored calls); None: none made."""
    skipped_24h: int = 0
    """The watch's checks of the last 24 hours a cost cap kept from being made."""


def status(store: Store, now: float | None = None) -> list[EndpointStatus]:
    """Each watch's endpoints as their last check left them, and the cost of the last 24 hours
    (`now`: the watch's clock, default the wall clock)."""
    now = time.time() if now is None else now
    out = []
    for name in store.watch_names():
        checks = store.watch_checks(name)
        started = {c.seq: c.started_at for c in checks}
        day = [c for c in checks if now - DAY_S < c.started_at <= now]
        costs = actual(store, check_runs(store, name, [c.seq for c in day if c.status != SKIPPED]))
        skipped = sum(1 for c in day if c.status == SKIPPED)
        last = {s.endpoint: s for s in store.watch_steps(name)}  # ordered by seq: the newest wins
        for ep, s in sorted(last.items()):
            state = DetectorState.model_validate_json(s.state_json)
            out.append(
                EndpointStatus(
                    watch=name,
                    endpoint=ep,
                    last_seq=s.seq,
                    last_at=started.get(s.seq),
                    phase=state.phase,
                    n=s.n,
                    changed=s.changed,
                    statistic=state.statistic,
                    threshold=s.threshold,
                    p0=state.p0,
                    checks=state.baseline_seen + state.checks,
                    gaps=state.gaps,
                    why=s.why,
                    cost_24h=costs.get(ep),
                    skipped_24h=skipped,
                )
            )
    return out
