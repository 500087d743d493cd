"""The lease that makes each check of a watch once, however many watcher processes (on however
many hosts) share its store.

A check is begun by inserting its row (`watch_checks`, primary key the watch and the check's
number): of two watchers beginning the same check, the store lets one in — the other is told the
check is held and makes nothing. The row names its holder (`host:pid:token`) and a wall-clock time
its hold lasts to, renewed by a heartbeat while the check is made; the holder writes the check's
steps only while it still holds it. A check left running is taken over only when its holder is
gone: its process no longer exists (same host), or its lease ran out (another host; within `lease`
seconds of its last renewal). Lease times are the wall clock's, not the watch's (a simulated clock
is one process's; the lease is between processes).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from types import TracebackType

from bakeoff._procs import pid_alive
from bakeoff.store import Store, WatchCheck

LEASE_S = 300.0
"""A check's hold, renewed every third of it while the check is made."""

_TOKEN = secrets.token_hex(4)


def me() -> str:
    """This process's name as a holder, `host:pid:token` (the token: a pid reused after a crash
    is not taken for the process that crashed)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def gone(check: WatchCheck, now: float) -> bool:
    """Whether a running check's holder is gone: none named, its lease out, or (on this host) its
    process no longer there."""
    if check.owner is None or check.lease_until is None or check.lease_until < now:
        return True
    host, pid, _ = check.owner.rsplit(":", 2)
    return host == socket.gethostname() and not pid_alive(int(pid))


class Heartbeat:
    """While inside: the check's lease renewed every `lease / 3` seconds (a thread with its own
    connection). `lost` is set if another watcher took it over meanwhile."""

    def __init__(
        self, db: str, name: str, seq: int, owner: str, lease: float, log: Callable[[str], None]
    ) -> None:
        self.db, self.name, self.seq, self.owner = db, name, seq, owner
        self.lease, self.log = lease, log
        self.stop = threading.Event()
        self.lost = False
        self.thread = threading.Thread(target=self._beat, daemon=True, name="watch-lease")

    def _beat(self) -> None:
        while not self.stop.wait(self.lease / 3):
            try:
                with closing(Store(self.db)) as store:
                    held = store.renew_lease(
                        self.name, self.seq, self.owner, time.time() + self.lease
                    )
            except Exception as e:  # a store briefly unreachable: try again at the next beat
                self.log(f"watch {self.name}: the lease of check {self.seq} not renewed: {e}")
                continue
            if not held:
                self.lost = True
                self.log(
                    f"watch {self.name}: check {self.seq} was taken over by another watcher "
                    "(this one's lease ran out); its result will not be stored by this one"
                )
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.thread.join(10)
