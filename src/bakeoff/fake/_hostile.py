"""The fake provider's hostile replies (`[[fault:NAME]]` for a name in `HOSTILE`): the shapes,
sizes, bombs, floods and usage values a broken or malicious endpoint sends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeConfig

HOSTILE: dict[str, str] = {
    # shapes: each must be one bad_response call (or, where the value is only a label, an ok one)
    "choices_strings": '`"choices": ["x"]`',
    "choices_object": "`choices` is an object",
    "delta_string": '`"delta": "oops"` (a message that is a string, unstreamed)',
    "message_list": "the message (or delta) is an array",
    "content_number": "`content: 42`",
    "tool_index_mixed": "tool-call deltas indexed 0 then '0' (completions: `text` an array)",
    "tool_calls_string": '`"tool_calls": "call"`',
    "logprobs_string": '`"logprobs": "x"`',
    "finish_object": "finish_reason is an object (kept as its JSON text: an ok call)",
    "event_array": "an event (or body) that is a JSON array",
    "body_null": "an event (or body) that is `null`",
    "deep_nesting": "20,000 nested arrays",
    # usage: each an ok call, usage recorded as invalid, tokens counted
    "usage_string": '`completion_tokens: "lots"`',
    "usage_huge": "`completion_tokens: 1e308`",
    "usage_negative": "`completion_tokens: -5`",
    "usage_bool": "`completion_tokens: true`",
    "usage_bigint": "`completion_tokens: 10**30`",
    "usage_fraction": "`completion_tokens: 3.5`",
    # sizes, bombs and floods: each a too_large call (or a timeout), memory bounded
    "endless": "valid token events forever, never [DONE]",
    "token_flood": "one-character tokens as fast as the socket takes them",
    "huge_body": "an unstreamed body that never ends",
    "huge_line": "one `data:` line that never ends",
    "huge_event": "`data:` lines forever, never a blank line",
    "comment_flood": "`: ping` keep-alives forever, never an event",
    "gzip_bomb": "1 MB of gzip that inflates to 1 GB (Content-Encoding: gzip)",
    "gzip_stream_bomb": "a gzip stream of token events that never ends",
    "huge_error": "a 500 whose body never ends",
    "bad_encoding": "Content-Encoding: br with bytes that are not brotli",
    "bad_encoding_error": "a 429 sent with Content-Encoding: br (classified by its status)",
    "redirect": "307 to another port",
    # found by an attacker's review of the first version
    "retry_after_bytes": "429 whose Retry-After holds a byte that is not UTF-8",
    "retry_after_nan": "429 with `Retry-After: nan` (a NaN timer stalls asyncio's others)",
    "gzip_stream_burst": "6 MB of token events and [DONE], gzip-compressed in one piece (~20 KB)",
    "gzip_trailing": "a gzip body that is whole, then zeros forever after its end",
    "tool_args_flood": "tool-call argument deltas of 200 characters, 100,000 of them",
    "logprobs_flood": "logprobs entries `{}` by the hundred thousand (an object per 3 bytes)",
    # well-formed replies that are hostile to the scorers (each an ok call, scored)
    "score_backtrack": '`"=" + 3000 spaces`: 3 KB that held the numeric scorer for good',
    "score_long": '`"=" + 199,999 spaces`: 200,000 characters, past the inline scoring size',
    "score_regex_bomb": "a JSON string of 40 `a` and a `!`: `^(a+)+$` in a schema backtracks 2^40",
}
"""Hostile replies (`[[fault:NAME]]`): the shapes, sizes, bombs, floods and usage values a broken or
malicious endpoint sends. `hostile_bytes` bounds what the endless ones send before they stop."""


def _sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return b"data: " + data + b"\n\n"


@functools.cache
def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, 9)


_SHAPES: dict[str, Callable[[dict[str, object], str, bool], object]] = {
    "choices_strings": lambda good, key, chat: {"choices": ["x"]},
    "choices_object": lambda good, key, chat: {"choices": {"0": good}},
    "delta_string": lambda good, key, chat: {"choices": [{**good, key: "oops", "text": ["oops"]}]},
    "message_list": lambda good, key, chat: {
        "choices": [{**good, key: [good[key] if chat else "x"], "text": {"t": 1}}]
    },
    "content_number": lambda good, key, chat: {
        "choices": [{**good, key: {"content": 42}, "text": 42}]
    },
    "tool_calls_string": lambda good, key, chat: {
        "choices": [{**good, key: {"tool_calls": "call"}, "text": None}]
        if chat
        else [{**good, "text": True}]
    },
    "logprobs_string": lambda good, key, chat: {"choices": [{**good, "logprobs": "x"}]},
    "finish_object": lambda good, key, chat: {
        "choices": [{**good, "finish_reason": {"why": "ok"}}]
    },
    "event_array": lambda good, key, chat: [1, 2, 3],
    "body_null": lambda good, key, chat: None,
}
"""The shape faults: the bad object made from a good choice, the key of its message (`delta` or
`message`) and whether it is a chat reply."""


def _shape(fault: str, chat: bool, stream: bool) -> bytes | None:
    """The one bad object of a shape fault, as a stream event's or a body's JSON bytes."""
    if fault == "deep_nesting":
        return b"[" * 20_000 + b"]" * 20_000
    make = _SHAPES.get(fault)
    if make is None:
        return None
    key = "delta" if stream else "message"
    good: dict[str, object] = (
        {"index": 0, key: {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": "ok", "finish_reason": "stop"}
    )
    return orjson.dumps(make(good, key, chat))


def _usage(fault: str) -> bytes | None:
    value = {
        "usage_string": b'"lots"',
        "usage_huge": b"1e308",
        "usage_negative": b"-5",
        "usage_bool": b"true",
        "usage_bigint": b"1" + b"0" * 30,
        "usage_fraction": b"3.5",
    }.get(fault)
    if value is None:
        return None
    return b'{"prompt_tokens": 3, "completion_tokens": ' + value + b', "total_tokens": 7}'


async def _hostile(
    request: web.Request, fault: str, chat: bool, stream: bool, c: FakeConfig
) -> web.StreamResponse:
    if (resp := _header_fault(request, fault)) is not None:
        return resp
    if fault in ("tool_args_flood", "logprobs_flood"):
        return await _flood(request, fault, chat, stream, c)
    if fault == "gzip_stream_burst":
        return await _gzip_burst(request, chat)
    if fault.startswith("score_"):
        return await _text(request, _SCORING_TEXT[fault], chat, stream, c)
    shape = _shape(fault, chat, stream)
    usage = _usage(fault)
    if shape is not None or usage is not None:
        if not stream:
            return _bad_body(shape, usage, chat, c)
        return await _bad_stream(request, fault, shape, usage, chat, c)
    if fault == "tool_index_mixed":  # unstreamed: the same fault as a body
        calls = [{"id": "c0", "function": {"name": "f", "arguments": "{}"}}, "x"]
        bad = {"choices": [{"index": 0, "message": {"tool_calls": calls}, "text": ["a", 1]}]}
        return web.Response(body=orjson.dumps(bad), content_type="application/json")
    return await _endless(request, fault, chat, c)


def _header_fault(request: web.Request, fault: str) -> web.Response | None:
    """The faults in the status line and headers: a redirect, a Retry-After no timer can take."""
    if fault == "redirect":
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:9/{request.path}")
    if fault == "retry_after_nan":
        return web.json_response({"error": {"message": "slow"}}, status=429,
                                 headers={"Retry-After": "nan"})  # fmt: skip
    if fault == "retry_after_bytes" and request.transport is not None:
        # aiohttp encodes headers as UTF-8: the raw response goes straight to the socket
        request.transport.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: \xff1\r\n"
                                b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")  # fmt: skip
        request.transport.close()
        raise asyncio.CancelledError  # nothing more to send; aiohttp drops the handler
    return None


async def _gzip_burst(request: web.Request, chat: bool) -> web.StreamResponse:
    delta = {"delta": {"content": "a"}} if chat else {"text": "a"}
    events = _sse({"choices": [{"index": 0, **delta}]}) * (6_000_000 // 50)
    headers = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        await resp.write(_gzip(events + b"data: [DONE]\n\n"))
    return resp


def _good_choice(chat: bool, stream: bool) -> dict[str, object]:
    msg = {"role": "assistant", "content": "a b c"}
    part = {"delta" if stream else "message": msg} if chat else {"text": "a b c"}
    return {"index": 0, "finish_reason": "stop", **part}


def _bad_body(shape: bytes | None, usage: bytes | None, chat: bool, c: FakeConfig) -> web.Response:
    """An unstreamed shape fault (its bad object is the body), or a good body with bad usage."""
    ctype = "application/json"
    if shape is not None or usage is None:
        return web.Response(body=shape, content_type=ctype)
    body = orjson.dumps({"model": c.model, "choices": [_good_choice(chat, False)]})
    return web.Response(body=body[:-1] + b', "usage": ' + usage + b"}", content_type=ctype)


async def _bad_stream(
    request: web.Request,
    fault: str,
    shape: bytes | None,
    usage: bytes | None,
    chat: bool,
    c: FakeConfig,
) -> web.StreamResponse:
    """A streamed shape fault (one bad event), or a good event then one with bad usage."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if fault == "tool_index_mixed" and not chat:  # no tools in completions: text an array
        await resp.write(_sse({"choices": [{"index": 0, "text": ["a", 1]}]}))
    elif fault == "tool_index_mixed":
        head = {"index": 0, "id": "c0", "function": {"name": "f", "arguments": ""}}
        tail = {"index": "0", "function": {"arguments": "{}"}}
        for tc in (head, tail):
            await resp.write(_sse({"choices": [{"index": 0, "delta": {"tool_calls": [tc]}}]}))
    elif shape is not None:
        await resp.write(_sse(shape))
    elif usage is not None:
        await resp.write(_sse({"model": c.model, "choices": [_good_choice(chat, True)]}))
        await resp.write(b'data: {"choices": [], "usage": ' + usage + b"}\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


_SCORING_TEXT = {
    "score_backtrack": "=" + " " * 3000,
    "score_long": "=" + " " * 199_999,
    "score_regex_bomb": '"' + "a" * 40 + '!"',
}


async def _text(
    request: web.Request, text: str, chat: bool, stream: bool, c: FakeConfig
) -> web.StreamResponse:
    """A well-formed reply of `text` (in events of 1,000 characters when streamed)."""

    def body(t: str, key: str, finish: str | None = None) -> dict[str, object]:
        part = {key: {"role": "assistant", "content": t}} if chat else {"text": t}
        return {"model": c.model, "choices": [{"index": 0, "finish_reason": finish, **part}]}

    if not stream:
        whole = body(text, "message", "stop")
        return web.Response(body=orjson.dumps(whole), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        for i in range(0, len(text), 1000):
            await resp.write(_sse(body(text[i : i + 1000], "delta")))
        await resp.write(_sse(body("", "delta", "stop")) + b"data: [DONE]\n\n")
    return resp


async def _flood(
    request: web.Request, fault: str, chat: bool, stream: bool, c: FakeConfig
) -> web.StreamResponse:
    if not stream:
        if fault == "logprobs_flood":
            n = 2_000_000
            many = b'{"content": [' + b"{}," * (n - 1) + b"{}]}"
            body = b'{"choices": [{"index": 0, "message": {"content": "x"}, "text": "x",'
            return web.Response(body=body + b' "logprobs": ' + many + b"}]}",
                                content_type="application/json")  # fmt: skip
        arg = {"index": 0, "function": {"arguments": "a" * 200}}
        calls = [{"id": "c0", "function": {"name": "f", "arguments": "a" * 20_000_000}}, arg]
        body = orjson.dumps({"choices": [{"index": 0, "message": {"tool_calls": calls}}]})
        return web.Response(body=body, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if fault == "logprobs_flood":
        lp: dict[str, list[Any]] = {"content": [{}] * 1000} if chat else {"tokens": ["x"] * 1000}
        delta = {"delta": {"content": "x"}} if chat else {"text": "x"}
        unit = _sse({"choices": [{"index": 0, **delta, "logprobs": lp}]})
    else:
        args = {"index": 0, "function": {"arguments": "a" * 200}}
        if chat:
            unit = _sse({"choices": [{"index": 0, "delta": {"tool_calls": [args]}}]})
        else:
            unit = _sse({"choices": [{"index": 0, "text": "a" * 200}]})
    with contextlib.suppress(ConnectionError):
        for i in range(100_000):
            await resp.write(unit)
            if i % 64 == 0:
                await asyncio.sleep(0)
        await resp.write(b"data: [DONE]\n\n")
    return resp


async def _endless(
    request: web.Request, fault: str, chat: bool, c: FakeConfig
) -> web.StreamResponse:
    """The size faults: bytes until the client hangs up (or `hostile_bytes` are sent)."""
    json_body = fault in ("huge_body", "gzip_trailing")
    headers = {"Content-Type": "application/json" if json_body else "text/event-stream"}
    status = {"huge_error": 500, "bad_encoding_error": 429}.get(fault, 200)
    if fault in ("gzip_bomb", "gzip_stream_bomb", "gzip_trailing"):
        headers["Content-Encoding"] = "gzip"
    if fault in ("bad_encoding", "bad_encoding_error"):
        headers["Content-Encoding"] = "br"
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    delta = (lambda t: {"delta": {"content": t}}) if chat else (lambda t: {"text": t})
    token = _sse({"choices": [{"index": 0, **delta(" tok")}]})
    one = _sse({"choices": [{"index": 0, **delta("x")}]})
    unit = {
        "endless": token * 64,
        "token_flood": one * 256,
        "huge_body": b"a" * 65536,
        "huge_line": b"b" * 65536,
        "huge_event": b"data: " + b"c" * 1000 + b"\n",
        "comment_flood": b": ping\n" * 4096,
        "huge_error": b"<error>" * 8192,
        "bad_encoding": bytes(range(256)) * 64,
        "bad_encoding_error": bytes(range(256)) * 64,
        "gzip_stream_bomb": token * 256,
    }.get(fault, b"\0" * 65536)
    first = {
        "huge_body": b'{"choices": [{"index": 0, "message": {"content": "',
        "huge_line": b'data: {"choices": [{"index": 0, "delta": {"content": "',
    }.get(fault, b"")
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if "gzip" in fault else None
    sent = 0
    if fault == "gzip_trailing" and gz is not None:
        whole = {
            "choices": [
                {"index": 0, **({"message": {"content": "ok"}} if chat else {"text": "ok"})}
            ]
        }
        first, unit = gz.compress(orjson.dumps(whole)) + gz.flush(), b"\0" * 65536
        gz = None
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        if first:
            await resp.write(first)
        while sent < c.hostile_bytes:
            if gz is not None:  # flushed per unit: ~70 bytes for 64 KB of zeros
                await resp.write(gz.compress(unit) + gz.flush(zlib.Z_SYNC_FLUSH))
            else:
                await resp.write(unit)
            sent += len(unit)
            await asyncio.sleep(0)  # small writes do not yield: let a client in this loop read
            if fault == "gzip_bomb" and sent >= 1_000_000_000:
                break
        if gz is not None:
            await resp.write(gz.flush())
        await resp.write_eof()
    return resp


async def _until(deadline: float) -> None:
    """Sleep until the loop clock reaches `deadline`, to well under a millisecond: the selector
    rounds timeouts up to whole milliseconds, so the last millisecond is spent yielding."""
    loop = asyncio.get_running_loop()
    left = deadline - loop.time()
    if left > 0.0015:
        await asyncio.sleep(left - 0.0015)
    while loop.time() < deadline:
        await asyncio.sleep(0)
