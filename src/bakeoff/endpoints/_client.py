"""The wire client: one attempt of one OpenAI-compatible call, timed chunk by chunk.

Hot path. Every read from the socket is stamped with `perf_counter_ns` before any parsing; each SSE
event takes the stamp of the read that completed it. Timeouts use one `asyncio.Timeout` whose deadline
is moved as the stream advances (connect → first token → stall between chunks), so a healthy stream
costs no extra tasks or timers.

Nothing an endpoint sends is trusted: the body is decompressed here, by bounded steps, and read up to
`Limits`; every field is checked for its type before it is used; redirects are not followed. Whatever
the reply, one attempt ends in a `CallResult` or a classified `CallError`, never another exception.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from bakeoff.endpoints._errors import classify_error_object, classify_status
from bakeoff.endpoints._sse import SSELimitError, SSEParser
from bakeoff.endpoints._types import (
    CallError,
    CallRequest,
    CallResult,
    ErrorClass,
    Timings,
    ToolCall,
)

MAX_RAW_BYTES = 1_000_000
"""Raw responses stored beyond this size are cut (and say so)."""


class Timeouts(BaseModel):
    """Seconds. Each phase has its own limit so that a timeout says where the endpoint stopped."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default

    connect: float = Field(default=10.0, gt=0, le=86400, allow_inf_nan=False)
    """TCP (and TLS) connection set-up."""
    first_token: float = Field(default=120.0, gt=0, le=86400, allow_inf_nan=False)
    """From sending the request to the first token (or the whole body when not streaming)."""
    stall: float = Field(default=60.0, gt=0, le=86400, allow_inf_nan=False)
    """Longest silence allowed between two chunks of a stream."""
    total: float = Field(default=600.0, gt=0, le=7 * 86400, allow_inf_nan=False)
    """Whole call, whatever the phase."""


class Limits(BaseModel):
    """Bytes. What one reply may send before the call ends as `too_large` (nothing beyond is held)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default

    max_response_bytes: int = Field(default=16_000_000, ge=1024, le=2_000_000_000)
    """The whole reply body, counted after decompression (a gzip bomb stops here)."""
    max_event_bytes: int = Field(default=4_000_000, ge=1024, le=2_000_000_000)
    """One line, and one event, of a stream."""


MAX_ERROR_BODY = 65_536
"""Of an error reply (4xx/5xx, HTML), only this much is read: 500 characters are kept."""
MAX_TOKEN_COUNT = 100_000_000
"""Usage counts above this (or negative, or not integers) are recorded as invalid."""


CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
"""Headers that carry a credential: refused in a lineup file (keys come from `api_key_env`), and
redacted before anything is stored (with every header whose name contains `key`)."""


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as they may be stored: credentials replaced."""
    out = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk in CREDENTIAL_HEADERS or "key" in lk:
            out[k] = "***"
        else:
            out[k] = v
    return out


class EndpointClient:
    """Sends `CallRequest`s to one OpenAI-compatible base URL over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        stream_usage: bool = True,
        upstream_field: str | None = "provider",
        limits: Limits | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self.extra_body = dict(extra_body or {})
        self.stream_usage = stream_usage
        self.upstream_field = upstream_field
        # only the encodings decompressed here, by bounded steps (`_Body`)
        self._headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
            **(headers or {}),
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeouts.connect, sock_connect=self.timeouts.connect
        )

    # -- request building ---------------------------------------------------------------------
    def url_for(self, req: CallRequest) -> str:
        path = "/chat/completions" if req.api == "chat" else "/completions"
        return self.base_url + path

    def body_for(self, req: CallRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        if req.api == "chat":
            body["messages"] = req.messages or []
        else:
            body["prompt"] = req.prompt or ""
        body.update(self.extra_body)
        body.update(req.params)
        body["stream"] = req.stream
        if req.stream and self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def stored_request(self, req: CallRequest) -> dict[str, Any]:
        """The request as it is stored: URL, redacted headers, body."""
        return {
            "url": self.url_for(req),
            "headers": redact_headers(self._headers),
            "body": self.body_for(req),
        }

    # -- one attempt ----------------------------------------------------------------------------
    async def call(self, req: CallRequest) -> CallResult:
        """One attempt. Returns a result or raises `CallError`; never retries."""
        url = self.url_for(req)
        payload = orjson.dumps(self.body_for(req))
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter_ns()
        start = loop.time()
        hard_end = start + self.timeouts.total
        phase = ["first_token"]  # mutable: the stream reader moves it on
        try:
            async with asyncio.timeout_at(min(start + self.timeouts.first_token, hard_end)) as tm:
                async with self.session.post(
                    url,
                    data=payload,
                    headers=self._headers,
                    timeout=self._client_timeout,
                    allow_redirects=False,
                    auto_decompress=False,
                ) as resp:
                    body = _Body(resp, self.limits.max_response_bytes)
                    ctype = resp.headers.get("Content-Type", "")
                    if resp.status >= 400:
                        raise classify_status(
                            resp.status,
                            await body.text(MAX_ERROR_BODY),
                            ctype,
                            resp.headers.get("Retry-After"),
                        )
                    if 300 <= resp.status < 400:
                        where = resp.headers.get("Location", "")[:200]
                        raise CallError(
                            ErrorClass.bad_request,
                            f"HTTP {resp.status} redirect to {where!r}, not followed (set the"
                            " endpoint's base_url to where it should go, if you trust it)",
                            status=resp.status,
                        )
                    if "html" in ctype:
                        raise CallError(
                            ErrorClass.bad_response,
                            f"HTML page instead of JSON (HTTP {resp.status})",
                            status=resp.status,
                            body=(await body.text(MAX_ERROR_BODY))[:500],
                        )
                    try:
                        if req.stream and "text/event-stream" in ctype:
                            result = await self._read_stream(
                                body, req, t0, tm, hard_end, loop, phase
                            )
                        else:
                            result = self._parse_body(await body.read(), req, t0)
                    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
                        # a shape no check below foresaw: still one bad call, with the reason
                        raise CallError(
                            ErrorClass.bad_response, f"unexpected response shape: {_short(e)}"
                        ) from None
                    result.status = resp.status
                    return result
        except CallError:
            raise
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError: it is one
            raise CallError(ErrorClass.timeout, "connect timeout") from None
        except TimeoutError:
            detail = "total" if loop.time() >= hard_end - 1e-3 else phase[0]
            raise CallError(ErrorClass.timeout, f"{detail} timeout") from None
        except aiohttp.ClientPayloadError as e:
            raise CallError(
                ErrorClass.connection_error, f"connection closed mid-response: {_short(e)}"
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise CallError(ErrorClass.connection_error, f"cannot connect: {_short(e)}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError) as e:
            raise CallError(ErrorClass.connection_error, _short(e)) from None
        except aiohttp.ClientError as e:
            raise CallError(ErrorClass.connection_error, _short(e)) from None

    async def _read_stream(
        self,
        body: _Body,
        req: CallRequest,
        t0: int,
        tm: asyncio.Timeout,
        hard_end: float,
        loop: asyncio.AbstractEventLoop,
        phase: list[str],
    ) -> CallResult:
        ev_cap = self.limits.max_event_bytes
        parser = SSEParser(max_line=ev_cap, max_event=ev_cap)
        timings = Timings(sent_ns=t0)
        chunk_ms = timings.token_chunk_ms
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        tools: dict[int, ToolCall] = {}
        logprobs: list[dict[str, Any]] | None = None
        raw_events: list[bytes] = []
        raw_size = 0
        result = CallResult(timings=timings)
        usage: dict[str, Any] | None = None
        n_token_chunks = 0
        done = False
        stall = self.timeouts.stall
        is_chat = req.api == "chat"
        first_token_seen = False
        while True:
            data = await body.readany()
            now = time.perf_counter_ns()
            if not data:
                break
            if timings.first_byte_ms is None:
                timings.first_byte_ms = (now - t0) / 1e6
            ms = (now - t0) / 1e6
            try:
                events = parser.feed(data)
            except SSELimitError as e:
                raise CallError(ErrorClass.too_large, str(e)) from None
            for ev in events:
                if raw_size < MAX_RAW_BYTES:
                    raw_events.append(ev)
                    raw_size += len(ev) + 1
                if ev == b"[DONE]":
                    done = True
                    continue
                try:
                    obj = orjson.loads(ev)
                except orjson.JSONDecodeError:
                    raise CallError(
                        ErrorClass.bad_response,
                        f"malformed JSON in stream event: {ev[:80]!r}",
                        body=ev[:500].decode("utf-8", "replace"),
                    ) from None
                if not isinstance(obj, dict):
                    raise CallError(ErrorClass.bad_response, "stream event is not a JSON object")
                if obj.get("error"):
                    raise classify_error_object(obj["error"])
                if obj.get("usage"):
                    usage = obj["usage"]
                if self.upstream_field and obj.get(self.upstream_field) and not result.upstream:
                    result.upstream = _label(obj[self.upstream_field])
                if result.response_model is None and obj.get("model"):
                    result.response_model = _label(obj["model"])
                choices = _list(obj.get("choices"), "choices")
                if not choices:
                    continue
                ch = _dict(choices[0], "choices[0]")
                token = False
                if is_chat:
                    delta = _dict(ch.get("delta"), "delta")
                    c = _text(delta.get("content"), "delta.content")
                    if c:
                        text_parts.append(c)
                        token = True
                    r = _text(
                        delta.get("reasoning_content") or delta.get("reasoning"), "delta.reasoning"
                    )
                    if r:
                        reasoning_parts.append(r)
                        token = True
                    tcs = _list(delta.get("tool_calls"), "delta.tool_calls")
                    if tcs:
                        token = True
                        for tc in tcs:
                            _merge_tool_delta(tools, _dict(tc, "tool call delta"))
                    if not token and delta.get("role") and timings.role_ms is None:
                        timings.role_ms = ms
                    lp = _dict(ch.get("logprobs"), "logprobs")
                    if lp.get("content"):
                        if logprobs is None:
                            logprobs = []
                        logprobs.extend(_list(lp["content"], "logprobs.content"))
                else:
                    c = _text(ch.get("text"), "text")
                    if c:
                        text_parts.append(c)
                        token = True
                    lp = _dict(ch.get("logprobs"), "logprobs")
                    if lp:
                        if logprobs is None:
                            logprobs = []
                        logprobs.append(lp)
                if ch.get("finish_reason"):
                    result.finish_reason = _label(ch["finish_reason"])
                if token:
                    n_token_chunks += 1
                    chunk_ms.append(ms)
                    if not first_token_seen:
                        first_token_seen = True
                        timings.first_token_ms = ms
                        phase[0] = "stall"
            if first_token_seen:
                # the stream advanced: the next read may take up to `stall` seconds
                tm.reschedule(min(loop.time() + stall, hard_end))
        end = time.perf_counter_ns()
        timings.end_ms = (end - t0) / 1e6
        if chunk_ms:
            timings.last_token_ms = chunk_ms[-1]
        result.raw = b"\n".join(raw_events).decode("utf-8", "replace")
        if not done:
            what = "mid-event" if parser.pending else "before [DONE]"
            raise CallError(ErrorClass.bad_response, f"stream ended {what}")
        if not first_token_seen and result.finish_reason is None:
            raise CallError(ErrorClass.bad_response, "stream had no choices")
        result.text = "".join(text_parts)
        result.reasoning = "".join(reasoning_parts) or None
        result.tool_calls = [tools[k] for k in sorted(tools)]
        result.logprobs = logprobs
        _apply_usage(result, usage, n_token_chunks)
        return result

    def _parse_body(self, raw: bytes | bytearray, req: CallRequest, t0: int) -> CallResult:
        end_ms = (time.perf_counter_ns() - t0) / 1e6
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CallError(
                ErrorClass.bad_response,
                "malformed JSON body",
                body=raw[:500].decode("utf-8", "replace"),
            ) from None
        if not isinstance(obj, dict):
            raise CallError(ErrorClass.bad_response, "body is not a JSON object")
        if obj.get("error"):
            raise classify_error_object(obj["error"])
        choices = _list(obj.get("choices"), "choices")
        if not choices:
            raise CallError(ErrorClass.bad_response, "response has no choices")
        ch = _dict(choices[0], "choices[0]")
        result = CallResult(
            timings=Timings(sent_ns=t0, first_byte_ms=end_ms, end_ms=end_ms),
            finish_reason=_label(ch.get("finish_reason")),
            response_model=_label(obj.get("model")),
        )
        if self.upstream_field and obj.get(self.upstream_field):
            result.upstream = _label(obj[self.upstream_field])
        if req.api == "chat":
            msg = _dict(ch.get("message"), "message")
            result.text = _text(msg.get("content"), "message.content")
            result.reasoning = (
                _text(msg.get("reasoning_content") or msg.get("reasoning"), "message.reasoning")
                or None
            )
            for i, tc in enumerate(_list(msg.get("tool_calls"), "message.tool_calls")):
                tc = _dict(tc, "tool call")
                fn = _dict(tc.get("function"), "tool call function")
                result.tool_calls.append(
                    ToolCall(
                        id=_label(tc.get("id")) or f"call_{i}",
                        name=_label(fn.get("name")),
                        arguments=_arguments(fn.get("arguments")),
                    )
                )
            lp = _dict(ch.get("logprobs"), "logprobs")
            if lp.get("content"):
                result.logprobs = _list(lp["content"], "logprobs.content")
        else:
            result.text = _text(ch.get("text"), "text")
            lp = _dict(ch.get("logprobs"), "logprobs")
            if lp:
                result.logprobs = [lp]
        _apply_usage(result, obj.get("usage"), None)
        text = raw[: MAX_RAW_BYTES + 4].decode("utf-8", "replace")
        result.raw = text if len(raw) <= MAX_RAW_BYTES else text[:MAX_RAW_BYTES] + "…[cut]"
        return result


def _merge_tool_delta(tools: dict[int, ToolCall], tc: dict[str, Any]) -> None:
    idx = tc.get("index", len(tools))
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < 10_000:
        raise CallError(
            ErrorClass.bad_response, f"tool call index is not a small integer: {idx!r:.40}"
        )
    cur = tools.get(idx)
    if cur is None:
        cur = tools[idx] = ToolCall()
    if tc.get("id"):
        cur.id = _label(tc["id"])
    fn = _dict(tc.get("function"), "tool call function")
    name = _text(fn.get("name"), "tool call name")
    if name:
        cur.name = (cur.name or "") + name if cur.name and cur.name != name else name
    args = fn.get("arguments")
    if args:
        cur.arguments += _arguments(args)


def _dict(v: Any, what: str) -> dict[str, Any]:
    """A JSON object where one is expected (missing or null: empty)."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not an object")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not an array")
    return v


def _text(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not a string")
    return v


def _label(v: Any) -> str | None:
    """A short field kept as text whatever its type (model, provider, id, finish_reason)."""
    if v is None:
        return None
    return (v if isinstance(v, str) else orjson.dumps(v).decode("utf-8", "replace"))[:200]


def _arguments(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def _count(v: Any) -> int | None:
    """A usage count as it may be stored: a non-negative integer of sane size, else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, float) and not v.is_integer():
        return None
    return int(v) if 0 <= v <= MAX_TOKEN_COUNT else None


def _apply_usage(result: CallResult, usage: Any, n_token_chunks: int | None) -> None:
    """The endpoint's usage when its counts are valid; otherwise `usage_source` says `invalid` and,
    in a stream, the token-bearing chunks are counted instead."""
    reported = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if reported is not None:
        completion = _count(reported)
        if completion is not None:
            result.prompt_tokens = _count(usage.get("prompt_tokens"))
            result.completion_tokens = completion
            result.usage_source = "usage"
            return
        result.usage_source = "invalid"
        result.prompt_tokens = _count(usage.get("prompt_tokens"))
        if n_token_chunks is not None:
            result.completion_tokens = n_token_chunks
        return
    if n_token_chunks is not None:
        result.completion_tokens = n_token_chunks
        result.usage_source = "chunks"


class _Body:
    """The reply body, decompressed here by bounded steps and cut at `limit` bytes: more is a
    `too_large` error, never more memory."""

    def __init__(self, resp: aiohttp.ClientResponse, limit: int) -> None:
        self.content = resp.content
        self.limit = limit
        self.size = 0
        enc = resp.headers.get("Content-Encoding", "").strip().lower()
        self.inflate: Any = None
        if enc in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self.inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
        elif enc not in ("", "identity"):
            raise CallError(ErrorClass.bad_response, f"unsupported Content-Encoding {enc[:40]!r}")

    async def readany(self) -> bytes:
        """The next bytes of the body (b"" at its end)."""
        while True:
            data = await self.content.readany()
            if self.inflate is not None:
                if not data:
                    data = self.inflate.flush()
                    self.inflate = None
                else:
                    try:
                        data = self.inflate.decompress(data, self.limit - self.size + 1)
                    except zlib.error as e:
                        raise CallError(
                            ErrorClass.bad_response, f"cannot decompress the body: {e}"
                        ) from None
                    if self.inflate.unconsumed_tail:
                        self.size = self.limit + 1
                if not data and not self.content.at_eof():
                    continue  # compressed bytes that decompress to nothing yet
            self.size += len(data)
            if self.size > self.limit:
                raise CallError(
                    ErrorClass.too_large, f"the reply passed {self.limit:,} bytes (limits)"
                )
            return data

    async def read(self) -> bytearray:
        """The whole body, in one buffer (no second copy to join parts)."""
        buf = bytearray()
        while data := await self.readany():
            buf += data
        return buf

    async def text(self, cap: int) -> str:
        """The start of an error body (the rest is not read)."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < cap and (data := await self.readany()):
                parts.append(data)
                got += len(data)
        except CallError:
            pass
        return b"".join(parts)[:cap].decode("utf-8", "replace")


def _short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}"
    return s[:300]
