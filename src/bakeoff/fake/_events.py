"""A streamed reply of the fake server: the planned reply, its events (stamped when made), and
how they go out — in one write, or token by token on a schedule."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import orjson
from aiohttp import web

from bakeoff.fake._faults import ToolCall, _final, _tool_events
from bakeoff.fake._hostile import _until

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeConfig

DONE = b"data: [DONE]\n\n"


class LogEntry(TypedDict, total=False):
    """A request as the fake server logged it (`FakeServer.log`, the `log_file`'s lines)."""

    t: float
    path: str
    prompt: str
    fault: str | None
    stream: bool
    auth: bool
    body_keys: list[str]
    params: dict[str, object]
    """The request's sampling fields as sent."""


@dataclass(frozen=True, slots=True)
class _Planned:
    toks: list[str]
    finish: str
    tool_calls: list[ToolCall]
    usage: dict[str, object]
    cid: str
    created: int
    slow: float
    upstream: str | None


class _Events:
    """The events of one streamed reply, each stamped when made (with `stamps`)."""

    __slots__ = ("arrived_ns", "base", "chat", "stamps")

    def __init__(self, r: _Planned, c: FakeConfig, chat: bool, arrived_ns: int) -> None:
        self.base: dict[str, object] = {
            "id": r.cid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": r.created,
            "model": c.model,
        }
        if r.upstream:
            self.base["provider"] = r.upstream
        self.chat, self.stamps, self.arrived_ns = chat, c.stamps, arrived_ns

    def event(self, choices: list[dict[str, object]], **extra: object) -> bytes:
        obj = {**self.base, "choices": choices, **extra}
        if self.stamps:
            obj["x_fake_sent_ns"] = time.monotonic_ns()
            obj["x_fake_arrived_ns"] = self.arrived_ns
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def token(self, t: str) -> bytes:
        if self.chat:
            return self.event([{"index": 0, "delta": {"content": t}, "finish_reason": None}])
        return self.event([{"index": 0, "text": t, "finish_reason": None}])

    def role(self) -> bytes:
        return self.event([{"index": 0, "delta": {"role": "assistant"}}]) if self.chat else b""


def _tail(ev: _Events, r: _Planned, usage_key: str | None) -> list[bytes]:
    """The events after the tokens: tool calls, the finish reason, the usage if sent."""
    out = [*_tool_events(ev.event, r.tool_calls), _final(ev.event, ev.chat, r.finish)]
    if usage_key is None:
        return out
    usage = {"usage": r.usage} if usage_key == "usage" else {usage_key: {"usage": r.usage}}
    return [*out, ev.event([], **usage)]


async def _burst(
    resp: web.StreamResponse, ev: _Events, toks: list[str], tail: Callable[[], list[bytes]]
) -> None:
    """The whole stream in one write: what a fast server on loopback looks like."""
    role = ev.role()
    if ev.stamps and toks:  # the first token on its own, right after its send stamp
        await resp.write(role + ev.token(toks[0]))
        role, toks = b"", toks[1:]
    await resp.write(b"".join([role, *(ev.token(t) for t in toks), *tail(), DONE]))


async def _paced(
    resp: web.StreamResponse,
    ev: _Events,
    toks: list[str],
    cut_at: int | None,
    start: float,
    itl: float,
) -> bool:
    """The tokens on their schedule (token i at `start + i * itl`); False where a fault cuts the
    stream. The role chunk goes out with the first token, in one write, as fast servers send
    them."""
    role = ev.role()
    if not toks or cut_at == 0:
        await resp.write(role)
    for i, t in enumerate(toks):
        if i == cut_at:
            return False
        if i and itl:
            await _until(start + i * itl)
        await resp.write((role if i == 0 else b"") + ev.token(t))
    return cut_at is None
