"""What `analyse` reads of a store — a run's calls, its tool calls, a scorer's sums — as a
snapshot in memory: from a bundle (`audit verify`), or taken from the store on the event loop's
thread so that the analysis itself (the reference scorer: a model in-process, or HTTP) runs on
another and never blocks the loop (a SIGTERM is honoured while it scores)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class CallSource:
    """The three reads `analyse` makes of a store, answered from memory."""

    def __init__(self, calls: list[dict[str, Any]], checks: dict[str, Any]) -> None:
        self._calls = calls
        self._checks = checks

    @classmethod
    def snapshot(cls, store: Any, run_id: str, endpoints: tuple[str, ...]) -> CallSource:
        """The run's fidelity calls and suite checks as they are stored now."""
        calls = [row_dict(c) for c in store.calls(run_id) if c["suite"].startswith("fidelity.")]
        checks = {
            "tool_calls": [row_dict(r) for r in store.tool_calls(run_id, endpoints)],
            "truncation_suspected": store.score_sums(run_id, "truncation_suspected", endpoints),
        }
        return cls(calls, checks)

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        return self._calls

    def tool_calls(self, run_id: str, endpoints: tuple[str, ...]) -> list[dict[str, Any]]:
        return [r for r in self._checks["tool_calls"] if r["endpoint"] in endpoints]

    def score_sums(self, run_id: str, scorer: str, endpoints: tuple[str, ...]) -> dict[str, float]:
        sums = self._checks.get(scorer) or {}
        return {k: v for k, v in sums.items() if k in endpoints}


def row_dict(r: Any) -> dict[str, Any]:
    return {k: r[k] for k in r.keys()}  # noqa: SIM118 (a sqlite3.Row iterates its values)


async def off_loop(fn: Callable[[], T]) -> T:
    """`fn()` on a daemon thread of its own, awaited: the loop stays free for signals, and a
    cancelled await (Ctrl-C, SIGTERM) leaves the thread behind instead of waiting for it — a
    daemon thread never holds the process open (asyncio's default executor would: `asyncio.run`
    joins it at shutdown)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def work() -> None:
        try:
            out = fn()
        except BaseException as e:  # handed to the awaiting task, whatever it is
            loop.call_soon_threadsafe(settle, False, e)
        else:
            loop.call_soon_threadsafe(settle, True, out)

    threading.Thread(target=work, name="bakeoff-audit-analysis", daemon=True).start()
    return await fut
