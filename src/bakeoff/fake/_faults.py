"""The fake server's faults that end a request early or cut its stream, and the events that close
a stream."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bakeoff.fake._personas import PERSONAS

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeConfig


def _tool_events(event: Any, tool_calls: list[dict[str, Any]]) -> list[bytes]:
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


def _final(event: Any, chat: bool, finish: str) -> bytes:
    if chat:
        return event([{"index": 0, "delta": {}, "finish_reason": finish}])
    return event([{"index": 0, "text": "", "finish_reason": finish}])


def _early_fault(fault: str | None, c: FakeConfig) -> web.StreamResponse | None:
    persona = PERSONAS[c.persona] if c.persona else None
    if persona is not None and fault is not None:
        if fault == "context" and persona.silent_truncation:
            return None  # a reply, as if the prompt fitted
        if fault in persona.errors or fault == "rate_limit_bare":
            status, body = persona.errors.get(fault.removesuffix("_bare"), (None, None))
            if status is not None:
                headers = {"Retry-After": f"{c.retry_after_s:g}"} if fault == "rate_limit" else {}
                return web.json_response(body, status=status, headers=headers)
    if fault == "credits":
        return web.json_response({"error": {"message": "insufficient credits"}}, status=402)
    if fault == "rate_limit":
        return web.json_response(
            {"error": {"message": "rate limited", "type": "rate_limit"}},
            status=429,
            headers={"Retry-After": f"{c.retry_after_s:g}"},
        )
    if fault == "rate_limit_bare":
        return web.json_response({"error": {"message": "slow down"}}, status=429)
    if fault == "server_error":
        return web.json_response({"error": {"message": "internal error"}}, status=500)
    if fault == "bad_gateway":
        return web.Response(
            text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            status=502,
            content_type="text/html",
        )
    if fault == "unavailable":
        return web.json_response({"error": {"message": "overloaded"}}, status=503)
    if fault == "auth":
        return web.json_response({"error": {"message": "invalid api key"}}, status=401)
    if fault == "context":
        return web.json_response(
            {"error": {"message": "This model's maximum context length is 2048 tokens"}},
            status=400,
        )
    if fault == "html":
        return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")
    return None


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
