"""The fake server's faults that end a request early or cut its stream, and the events that close
a stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

from aiohttp import web

from bakeoff.fake._personas import PERSONAS, Persona

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeConfig


class ToolFunction(TypedDict):
    name: str
    arguments: str
    """JSON text."""


class ToolCall(TypedDict):
    """A tool call of a reply, as the OpenAI API sends it."""

    id: str
    type: str
    function: ToolFunction


def _tool_events(event: Callable[..., bytes], tool_calls: list[ToolCall]) -> list[bytes]:
    """Each tool call as two deltas: id + name, then the arguments (as providers stream them)."""
    out = []
    for i, tc in enumerate(tool_calls):
        head = {
            "index": i,
            "id": tc["id"],
            "type": "function",
            "function": {"name": tc["function"]["name"], "arguments": ""},
        }
        args = {"index": i, "function": {"arguments": tc["function"]["arguments"]}}
        out.append(event([{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]))
        out.append(event([{"index": 0, "delta": {"tool_calls": [args]}, "finish_reason": None}]))
    return out


def _final(event: Callable[..., bytes], chat: bool, finish: str) -> bytes:
    if chat:
        return event([{"index": 0, "delta": {}, "finish_reason": finish}])
    return event([{"index": 0, "text": "", "finish_reason": finish}])


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status, headers=headers)


_PLAIN_FAULTS: dict[str, Callable[[FakeConfig], web.Response]] = {
    "credits": lambda c: _error("insufficient credits", 402),
    "rate_limit": lambda c: web.json_response(
        {"error": {"message": "rate limited", "type": "rate_limit"}},
        status=429,
        headers={"Retry-After": f"{c.retry_after_s:g}"},
    ),
    "rate_limit_bare": lambda c: _error("slow down", 429),
    "server_error": lambda c: _error("internal error", 500),
    "bad_gateway": lambda c: web.Response(
        text="<html><body><h1>502 Bad Gateway</h1></body></html>",
        status=502,
        content_type="text/html",
    ),
    "unavailable": lambda c: _error("overloaded", 503),
    "auth": lambda c: _error("invalid api key", 401),
    "context": lambda c: _error("This model's maximum context length is 2048 tokens", 400),
    "html": lambda c: web.Response(
        text="<html><body>Welcome</body></html>", content_type="text/html"
    ),
}
"""The faults that answer at once with an error (or a page), whatever the persona."""


def _persona_error(persona: Persona, fault: str, c: FakeConfig) -> web.Response | None:
    """The persona's own error body for a fault, where it has one."""
    if fault not in persona.errors and fault != "rate_limit_bare":
        return None
    status, body = persona.errors.get(fault.removesuffix("_bare"), (None, None))
    if status is None:
        return None
    headers = {"Retry-After": f"{c.retry_after_s:g}"} if fault == "rate_limit" else {}
    return web.json_response(body, status=status, headers=headers)


def _early_fault(fault: str | None, c: FakeConfig) -> web.StreamResponse | None:
    if fault is None:
        return None
    persona = PERSONAS[c.persona] if c.persona else None
    if persona is not None:
        if fault == "context" and persona.silent_truncation:
            return None  # a reply, as if the prompt fitted
        if (resp := _persona_error(persona, fault, c)) is not None:
            return resp
    make = _PLAIN_FAULTS.get(fault)
    return None if make is None else make(c)


async def _cut(
    resp: web.StreamResponse, request: web.Request, fault: str | None, c: FakeConfig
) -> web.StreamResponse:
    if fault == "malformed":
        await resp.write(b'data: {"choices": [{"delta": {"content": "x"}\n\n')
        await resp.write(b"data: [DONE]\n\n")
    elif fault == "reset":
        if request.transport is not None:
            request.transport.abort()
    elif fault == "stall":
        await asyncio.sleep(c.stall_s)
    # truncate: end the HTTP response cleanly without [DONE]
    return resp
