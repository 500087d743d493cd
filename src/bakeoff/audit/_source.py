"""What `analyse` reads of a store — a run's calls, its tool calls, a scorer's sums — as a
snapshot in memory: from a bundle (`audit verify`), or taken from the store on the event loop's
thread so that the analysis itself (the reference scorer: a model in-process, or HTTP) runs on
another and never blocks the loop (a SIGTERM is honoured while it scores)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from bakeoff.lineups import purposes

if TYPE_CHECKING:
    from bakeoff.audit._types import Cells
    from bakeoff.store import Row, Store

T = TypeVar("T")

JsonRow = dict[str, object]
"""A stored row as columns read back: from the store, or from a bundle's JSON lines."""


@dataclass(frozen=True, slots=True)
class FidelityCall:
    """What the analysis reads of one stored fidelity call."""

    endpoint: str
    suite: str
    item_id: str
    repeat: int
    status: str
    output_text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    logprobs_json: str | None

    @classmethod
    def of(cls, row: Cells) -> FidelityCall:
        return cls(*(row[f.name] for f in fields(cls)))


class CallSource:
    """The three reads `analyse` makes of a store, answered from memory."""

    def __init__(self, calls: Sequence[JsonRow], checks: dict[str, object]) -> None:
        self._calls = calls
        tool_calls = checks.get("tool_calls")
        self._tool_calls = (
            [r for r in tool_calls if isinstance(r, dict)] if isinstance(tool_calls, list) else []
        )
        self._sums = {k: v for k, v in checks.items() if k != "tool_calls" and isinstance(v, dict)}

    @classmethod
    def snapshot(cls, store: Store, run_id: str, endpoints: tuple[str, ...]) -> CallSource:
        """The run's fidelity calls and suite checks as they are stored now."""
        calls = [
            row_dict(c)
            for c in store.calls(run_id)
            if c["suite"].startswith(purposes.FIDELITY_PREFIX)
        ]
        checks: dict[str, object] = {
            "tool_calls": [row_dict(r) for r in store.tool_calls(run_id, endpoints)],
            "truncation_suspected": store.score_sums(run_id, "truncation_suspected", endpoints),
        }
        return cls(calls, checks)

    def calls(self, run_id: str) -> Sequence[JsonRow]:
        return self._calls

    def tool_calls(self, run_id: str, endpoints: tuple[str, ...]) -> list[JsonRow]:
        return [r for r in self._tool_calls if r["endpoint"] in endpoints]

    def score_sums(self, run_id: str, scorer: str, endpoints: tuple[str, ...]) -> dict[str, float]:
        sums = self._sums.get(scorer) or {}
        return {k: v for k, v in sums.items() if k in endpoints and isinstance(v, int | float)}


def row_dict(r: Row) -> JsonRow:
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
