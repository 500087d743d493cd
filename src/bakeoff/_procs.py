"""Process helpers shared by the store (stale runs) and the local lineup (`local up` state), and
the one way a command takes SIGTERM and SIGINT for the time it runs (`signals_call`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (possibly another user's)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def signals_call(
    callback: Callable[[], object], *signals: signal.Signals, keep_ignored: bool = True
) -> Iterator[None]:
    """While inside, each of `signals` calls `callback` on the running event loop (so a SIGTERM can
    cancel a task, which then stores its work and ends: `runs.execute`); on leaving,
    the handler before is put back. With `keep_ignored`, a signal our parent set to be ignored
    stays ignored. Outside the main thread (no signal handler can be set there) it does nothing."""
    loop = asyncio.get_running_loop()
    before = {sig: signal.getsignal(sig) for sig in signals}
    installed: list[signal.Signals] = []
    try:
        for sig in signals:
            if keep_ignored and before[sig] is signal.SIG_IGN:
                continue
            try:
                loop.add_signal_handler(sig, callback)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)  # which sets SIG_DFL: put back the one before
            handler = before[sig]
            if handler is not None:
                signal.signal(sig, handler)
