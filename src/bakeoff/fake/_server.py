"""The fake provider: a real OpenAI-compatible HTTP server on loopback with scripted outputs and faults.

It speaks `/v1/chat/completions` and `/v1/completions` (streaming or not, usage in the stream when asked),
and `/v1/models`. Replies come from a mode (echo / script / fixed), are cut at `max_tokens`, and are
sent with a configured time to first token and inter-token delay. Faults are drawn per request from
seeded probabilities, or forced by a marker `[[fault:NAME]]` in the last user message.

Every request is appended to a log (in memory, at `GET /_fake/log`, and to a JSONL file if given) so
tests can count what the server really served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

FAULTS: dict[str, str] = {
    "rate_limit": "429 with Retry-After",
    "rate_limit_bare": "429 without Retry-After",
    "server_error": "500 with a JSON error",
    "bad_gateway": "502 with an HTML page",
    "unavailable": "503",
    "auth": "401",
    "context": "400 'maximum context length exceeded'",
    "html": "200 with an HTML page",
    "no_choices": "200 with no choices",
    "malformed": "a stream event that is not JSON",
    "truncate": "stream ends cleanly before [DONE]",
    "reset": "connection reset mid-stream",
    "stall": "stream stops sending mid-way (until the client gives up)",
    "slow": "every delay ten times longer",
}
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
    "redirect": "307 to another port",
    # found by an attacker's review of the first version
    "retry_after_bytes": "429 whose Retry-After holds a byte that is not UTF-8",
    "retry_after_nan": "429 with `Retry-After: nan` (a NaN timer stalls asyncio's others)",
    "gzip_stream_burst": "6 MB of token events and [DONE], gzip-compressed in one piece (~20 KB)",
    "gzip_trailing": "a gzip body that is whole, then zeros forever after its end",
    "tool_args_flood": "tool-call argument deltas of 200 characters, 100,000 of them",
    "logprobs_flood": "logprobs entries `{}` by the hundred thousand (an object per 3 bytes)",
}
"""Hostile replies (`[[fault:NAME]]`): the shapes, sizes, bombs, floods and usage values a broken or
malicious endpoint sends. `hostile_bytes` bounds what the endless ones send before they stop."""
_MARKER = re.compile(r"\[\[fault:([a-z_]+)\]\]")
_TOKEN = re.compile(r"\s*\S+|\s+$")
T0 = web.RequestKey("t0", float)
T0_NS = web.RequestKey("t0_ns", int)


class FakeConfig(BaseModel):
    """How the fake server behaves."""

    mode: str = "echo"
    """`echo` (last user message), `script` (exact prompt → reply), `fixed` (always `reply`)."""
    script: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    """Prompt → reply text, or → `{"content": ..., "tool_calls": [{"name", "arguments"}]}`."""
    reply: str = "I don't know."
    reply_tokens: int | None = None
    """Mode `fixed` with a reply of exactly this many tokens (for load tests)."""
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    capacity: int | None = None
    """Requests served at once; more wait in a queue (a server's batch limit, for load tests)."""
    faults: dict[str, float] = Field(default_factory=dict)
    """Fault → probability per request (drawn in arrival order from `seed`)."""
    max_faults_per_prompt: int | None = None
    """Stop injecting faults for a prompt once it had this many (so retries can succeed)."""
    retry_after_s: float = 0.05
    stall_s: float = 3600.0
    seed: int = 0
    stamps: bool = False
    """Add `x_fake_sent_ns` (time.monotonic_ns at send) to every stream event."""
    model: str = "fake-model"
    upstream: str | None = None
    """If set, a `provider` field naming the upstream, as OpenRouter does."""
    log_file: str | None = None
    markers: bool = True
    """Obey `[[fault:NAME]]` in the prompt (off: a healthy server beside a hostile one)."""
    hostile_bytes: int = 1_000_000_000
    """What an endless hostile reply sends at most (the client is expected to stop far sooner)."""


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _last_user(body: dict[str, Any]) -> str:
    if "messages" in body:
        for m in reversed(body.get("messages") or []):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return "".join(p.get("text", "") for p in c if isinstance(p, dict))
                return str(c or "")
        return ""
    p = body.get("prompt", "")
    return p if isinstance(p, str) else str(p)


class FakeServer:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.rng = random.Random(self.config.seed)
        self.log: list[dict[str, Any]] = []
        self._faults_by_prompt: dict[str, int] = {}
        self._log_fh = open(self.config.log_file, "ab") if self.config.log_file else None  # noqa: SIM115
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.in_flight = 0
        self._slots = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None

    # -- app -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_fake/log", self._get_log)
        app.router.add_get("/health", self._health)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=2.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"http://{host}:{self.port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    # -- helpers ---------------------------------------------------------------------------------
    def _record(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        if self._log_fh:
            self._log_fh.write(orjson.dumps(entry) + b"\n")
            self._log_fh.flush()

    def _pick_fault(self, prompt: str) -> str | None:
        m = _MARKER.search(prompt) if self.config.markers else None
        if m:
            return m.group(1)
        if not self.config.faults:
            return None
        cap = self.config.max_faults_per_prompt
        draw = self.rng.random()
        if cap is not None and self._faults_by_prompt.get(prompt, 0) >= cap:
            return None
        acc = 0.0
        for name, p in sorted(self.config.faults.items()):
            acc += p
            if draw < acc:
                self._faults_by_prompt[prompt] = self._faults_by_prompt.get(prompt, 0) + 1
                return name
        return None

    def _reply(self, prompt: str) -> tuple[str, list[dict[str, Any]]]:
        """The reply text and tool calls for a prompt."""
        c = self.config
        if c.mode == "echo":
            return _MARKER.sub("", prompt), []
        if c.mode == "script":
            found = c.script.get(prompt, c.reply)
            if isinstance(found, dict):
                return str(found.get("content") or ""), list(found.get("tool_calls") or [])
            return found, []
        if c.reply_tokens is not None:
            return " tok" * c.reply_tokens, []
        return c.reply, []

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _get_log(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.log), content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=False)

    # -- the handler -----------------------------------------------------------------------------
    async def _handle(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_arrive = time.time()
        request[T0] = asyncio.get_running_loop().time()
        request[T0_NS] = time.monotonic_ns()
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        prompt = _last_user(body)
        fault = self._pick_fault(prompt)
        entry = {
            "t": t_arrive,
            "path": request.path,
            "prompt": prompt,
            "fault": fault,
            "stream": bool(body.get("stream")),
            "auth": bool(request.headers.get("Authorization")),
            "params": {
                k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed") if k in body
            },
        }
        self._record(entry)
        self.in_flight += 1
        try:
            if self._slots is None:
                return await self._respond(request, body, prompt, fault, chat)
            async with self._slots:
                # service starts once a slot is free: the wait in the queue adds to TTFT
                request[T0] = asyncio.get_running_loop().time()
                return await self._respond(request, body, prompt, fault, chat)
        finally:
            self.in_flight -= 1

    async def _respond(
        self, request: web.Request, body: dict[str, Any], prompt: str, fault: str | None, chat: bool
    ) -> web.StreamResponse:
        c = self.config
        early = _early_fault(fault, c)
        if early is not None:
            return early
        if fault in HOSTILE:
            return await _hostile(request, fault, chat, bool(body.get("stream")), c)
        reply, calls = self._reply(prompt)
        toks = _tokens(reply)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and len(toks) > max_tokens:
            toks = toks[:max_tokens]
            finish = "length"
        tool_calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": tc["name"],
                    "arguments": orjson.dumps(tc.get("arguments", {})).decode(),
                },
            }
            for i, tc in enumerate(calls if chat else [])
        ]
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        slow = 10.0 if fault == "slow" else 1.0
        created = int(time.time())
        cid = f"fake-{created}-{len(self.log)}"
        usage = {
            "prompt_tokens": len(_tokens(prompt)),
            "completion_tokens": len(toks),
            "total_tokens": len(_tokens(prompt)) + len(toks),
        }
        if not body.get("stream"):
            if c.ttft_ms or c.itl_ms:
                await asyncio.sleep(slow * (c.ttft_ms + c.itl_ms * max(len(toks) - 1, 0)) / 1000)
            text = "".join(toks)
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {
                    "role": "assistant",
                    "content": text or (None if tool_calls else ""),
                }
                if tool_calls:
                    choice["message"]["tool_calls"] = tool_calls
            else:
                choice["text"] = text
            out: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": c.model,
                "choices": [] if fault == "no_choices" else [choice],
                "usage": usage,
            }
            if c.upstream:
                out["provider"] = c.upstream
            return web.Response(body=orjson.dumps(out), content_type="application/json")

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": c.model,
        }
        if c.upstream:
            base["provider"] = c.upstream
        stamps = c.stamps

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            obj = {**base, "choices": choices, **extra}
            if stamps:
                obj["x_fake_sent_ns"] = time.monotonic_ns()
                obj["x_fake_arrived_ns"] = request[T0_NS]
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        def tok_event(t: str) -> bytes:
            if chat:
                return event([{"index": 0, "delta": {"content": t}, "finish_reason": None}])
            return event([{"index": 0, "text": t, "finish_reason": None}])

        cut_at = len(toks) // 2 if fault in ("truncate", "reset", "stall", "malformed") else None
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        ttft = slow * c.ttft_ms / 1000
        itl = slow * c.itl_ms / 1000

        # delays on an absolute schedule from the request's arrival: token i goes out at
        # arrival + ttft + i * itl, so sleep overshoot does not accumulate
        t0 = request[T0]
        if ttft:
            await _until(t0 + ttft)
        if fault == "no_choices":
            await resp.write(b"data: [DONE]\n\n")
            return resp
        if itl == 0 and cut_at is None:
            # the whole stream in one write: what a fast server on loopback looks like
            parts = [event([{"index": 0, "delta": {"role": "assistant"}}])] if chat else []
            rest = toks
            if stamps and toks:
                # the first token goes out on its own, right after its send stamp was taken
                await resp.write(b"".join([*parts, tok_event(toks[0])]))
                parts, rest = [], toks[1:]
            parts.extend(tok_event(t) for t in rest)
            parts.extend(_tool_events(event, tool_calls))
            parts.append(_final(event, chat, finish))
            if want_usage:
                parts.append(event([], usage=usage))
            parts.append(b"data: [DONE]\n\n")
            await resp.write(b"".join(parts))
            return resp

        # the role chunk goes out with the first token, in one write, as fast servers send them
        role = event([{"index": 0, "delta": {"role": "assistant"}}]) if chat else b""
        if not toks or cut_at == 0:
            await resp.write(role)
        for i, t in enumerate(toks):
            if cut_at is not None and i == cut_at:
                return await _cut(resp, request, fault, c)
            if i and itl:
                await _until(t0 + ttft + i * itl)
            await resp.write((role if i == 0 else b"") + tok_event(t))
        if cut_at is not None:
            return await _cut(resp, request, fault, c)
        for ev in _tool_events(event, tool_calls):
            await resp.write(ev)
        await resp.write(_final(event, chat, finish))
        if want_usage:
            await resp.write(event([], usage=usage))
        await resp.write(b"data: [DONE]\n\n")
        return resp


def _sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return b"data: " + data + b"\n\n"


@functools.cache
def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, 9)


def _shape(fault: str, chat: bool, stream: bool) -> bytes | None:
    """The one bad object of a shape fault, as a stream event's or a body's JSON bytes."""
    key = "delta" if stream else "message"
    good: dict[str, Any] = (
        {"index": 0, key: {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": "ok", "finish_reason": "stop"}
    )
    bad: Any
    if fault == "choices_strings":
        bad = {"choices": ["x"]}
    elif fault == "choices_object":
        bad = {"choices": {"0": good}}
    elif fault == "delta_string":
        bad = {"choices": [{**good, key: "oops", "text": ["oops"]}]}
    elif fault == "message_list":
        bad = {"choices": [{**good, key: [good[key] if chat else "x"], "text": {"t": 1}}]}
    elif fault == "content_number":
        bad = {"choices": [{**good, key: {"content": 42}, "text": 42}]}
    elif fault == "tool_calls_string":
        bad = {"choices": [{**good, key: {"tool_calls": "call"}, "text": None}]}
        if not chat:
            bad = {"choices": [{**good, "text": True}]}
    elif fault == "logprobs_string":
        bad = {"choices": [{**good, "logprobs": "x"}]}
    elif fault == "finish_object":
        bad = {"choices": [{**good, "finish_reason": {"why": "ok"}}]}
    elif fault == "event_array":
        bad = [1, 2, 3]
    elif fault == "body_null":
        bad = None
    elif fault == "deep_nesting":
        return b"[" * 20_000 + b"]" * 20_000
    else:
        return None
    return orjson.dumps(bad)


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
    if fault in ("tool_args_flood", "logprobs_flood"):
        return await _flood(request, fault, chat, stream, c)
    if fault == "gzip_stream_burst":
        delta = {"delta": {"content": "a"}} if chat else {"text": "a"}
        events = _sse({"choices": [{"index": 0, **delta}]}) * (6_000_000 // 50)
        headers = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(_gzip(events + b"data: [DONE]\n\n"))
        return resp
    shape = _shape(fault, chat, stream)
    usage = _usage(fault)
    ctype = "text/event-stream" if stream else "application/json"
    if shape is not None or usage is not None:
        msg = {"role": "assistant", "content": "a b c"}
        choice = {"index": 0, "finish_reason": "stop", **({"delta" if stream else "message": msg}
                  if chat else {"text": "a b c"})}  # fmt: skip
        if not stream:
            if shape is not None:
                return web.Response(body=shape, content_type=ctype)
            body = orjson.dumps({"model": c.model, "choices": [choice]})
            return web.Response(body=body[:-1] + b', "usage": ' + usage + b"}",  # type: ignore[operator]
                                content_type=ctype)  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": ctype})
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
        else:
            await resp.write(_sse({"model": c.model, "choices": [choice]}))
            await resp.write(b'data: {"choices": [], "usage": ' + usage + b"}\n\n")  # type: ignore[operator]
        await resp.write(b"data: [DONE]\n\n")
        return resp
    if fault == "tool_index_mixed":  # unstreamed: the same fault as a body
        calls = [{"id": "c0", "function": {"name": "f", "arguments": "{}"}}, "x"]
        bad = {"choices": [{"index": 0, "message": {"tool_calls": calls}, "text": ["a", 1]}]}
        return web.Response(body=orjson.dumps(bad), content_type="application/json")
    return await _endless(request, fault, chat, c)


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
    status = 500 if fault == "huge_error" else 200
    if fault in ("gzip_bomb", "gzip_stream_bomb", "gzip_trailing"):
        headers["Content-Encoding"] = "gzip"
    if fault == "bad_encoding":
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


def load_script(path: str | Path) -> dict[str, str | dict[str, Any]]:
    data = orjson.loads(Path(path).read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a script is a JSON object mapping prompt → reply")
    return {str(k): v if isinstance(v, dict) else str(v) for k, v in data.items()}


def serve_forever(config: FakeConfig, host: str, port: int, on_ready: Any = None) -> None:
    """Run a fake server until interrupted (for `bakeoff fake-server`)."""

    async def main() -> None:
        server = FakeServer(config)
        url = await server.start(host, port)
        if on_ready:
            on_ready(url)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
