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
import io
import time
import zlib
from array import array
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

    max_response_bytes: int = Field(default=8_000_000, ge=1024, le=2_000_000_000)
    """The whole reply body, counted after decompression (a gzip bomb stops here)."""
    max_event_bytes: int = Field(default=4_000_000, ge=1024, le=2_000_000_000)
    """One line, and one event, of a stream."""


MAX_ERROR_BODY = 65_536
"""Of an error reply (4xx/5xx, HTML), only this much is read: 500 characters are kept."""
MAX_LOGPROB_ENTRIES = 65_536
"""Logprob entries (one per token) one reply may carry; more is `too_large`."""
MAX_JSON_CONTAINERS = 400_000
"""JSON objects and arrays one body or one stream event may hold (counted by their opening
brackets, strings included, before parsing); a long reply with top-20 logprobs holds ~100,000."""
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
        # compact while the stream lasts (a 16 MB stream is ~250,000 chunks): 8 bytes a stamp,
        # one buffer of text, instead of a float and a str object per chunk (~40 MB a call)
        chunk_ms = array("d")
        text_parts = io.StringIO()
        reasoning_parts = io.StringIO()
        tools: dict[int, _ToolParts] = {}
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
                    _objects(ev)
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
                        text_parts.write(c)
                        token = True
                    r = _text(
                        delta.get("reasoning_content") or delta.get("reasoning"), "delta.reasoning"
                    )
                    if r:
                        reasoning_parts.write(r)
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
                        logprobs.extend(_logprobs(lp["content"], len(logprobs)))
                else:
                    c = _text(ch.get("text"), "text")
                    if c:
                        text_parts.write(c)
                        token = True
                    lp = _dict(ch.get("logprobs"), "logprobs")
                    if lp:
                        if logprobs is None:
                            logprobs = []
                        logprobs.append(_completion_logprobs(lp))
                        if len(logprobs) > MAX_LOGPROB_ENTRIES:
                            raise CallError(
                                ErrorClass.too_large,
                                f"more than {MAX_LOGPROB_ENTRIES:,} logprob entries",
                            )
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
            timings.token_chunk_ms = chunk_ms.tolist()
        result.raw = b"\n".join(raw_events).decode("utf-8", "replace")
        if not done:
            what = "mid-event" if parser.pending else "before [DONE]"
            raise CallError(ErrorClass.bad_response, f"stream ended {what}")
        if not first_token_seen and result.finish_reason is None:
            raise CallError(ErrorClass.bad_response, "stream had no choices")
        result.text = text_parts.getvalue()
        result.reasoning = reasoning_parts.getvalue() or None
        result.tool_calls = [tools[k].call() for k in sorted(tools)]
        result.logprobs = logprobs
        _apply_usage(result, usage, n_token_chunks)
        return result

    def _parse_body(self, raw: bytes | bytearray, req: CallRequest, t0: int) -> CallResult:
        end_ms = (time.perf_counter_ns() - t0) / 1e6
        try:
            _objects(raw)
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
                result.logprobs = _logprobs(lp["content"], 0)
        else:
            result.text = _text(ch.get("text"), "text")
            lp = _dict(ch.get("logprobs"), "logprobs")
            if lp:
                result.logprobs = [_completion_logprobs(lp)]
        _apply_usage(result, obj.get("usage"), None)
        text = raw[: MAX_RAW_BYTES + 4].decode("utf-8", "replace")
        result.raw = text if len(raw) <= MAX_RAW_BYTES else text[:MAX_RAW_BYTES] + "…[cut]"
        return result


class _ToolParts:
    """One streamed tool call, its argument fragments kept apart until the end (appending to one
    string copied it whole on every delta: quadratic in the number of deltas)."""

    __slots__ = ("args", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []

    def call(self) -> ToolCall:
        return ToolCall(id=self.id, name=self.name, arguments="".join(self.args))


def _merge_tool_delta(tools: dict[int, _ToolParts], tc: dict[str, Any]) -> None:
    idx = tc.get("index", len(tools))
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < 10_000:
        raise CallError(
            ErrorClass.bad_response, f"tool call index is not a small integer: {idx!r:.40}"
        )
    cur = tools.get(idx)
    if cur is None:
        cur = tools[idx] = _ToolParts()
    if tc.get("id"):
        cur.id = _label(tc["id"])
    fn = _dict(tc.get("function"), "tool call function")
    name = _text(fn.get("name"), "tool call name")
    if name:
        # some servers repeat the whole name in every delta, others stream it in pieces
        cur.name = (cur.name or "") + name if cur.name and cur.name != name else name
        if len(cur.name) > 1000:
            raise CallError(ErrorClass.bad_response, "a tool call name of over 1,000 characters")
    args = fn.get("arguments")
    if args:
        cur.args.append(_arguments(args))


def _logprobs(v: Any, have: int) -> list[dict[str, Any]]:
    """Chat logprob entries (one object per token), `have` already held: capped, objects only."""
    entries = _list(v, "logprobs.content")
    if have + len(entries) > MAX_LOGPROB_ENTRIES:
        raise CallError(ErrorClass.too_large, f"more than {MAX_LOGPROB_ENTRIES:,} logprob entries")
    if not all(isinstance(e, dict) for e in entries):
        raise CallError(ErrorClass.bad_response, "a logprobs.content entry is not an object")
    return entries


def _completion_logprobs(lp: dict[str, Any]) -> dict[str, Any]:
    """A completions `logprobs` object: its per-token arrays capped."""
    for key, value in lp.items():
        if isinstance(value, list) and len(value) > MAX_LOGPROB_ENTRIES:
            raise CallError(ErrorClass.too_large, f"logprobs.{key[:40]} has over 65,536 entries")
    return lp


def _objects(raw: bytes | bytearray) -> None:
    """Refuse, before parsing, JSON that would build more than MAX_JSON_CONTAINERS objects and
    arrays: 16 MB of `{}` become 5 million dicts, 50 times the bytes in memory."""
    n = raw.count(b"{") + raw.count(b"[")
    if n > MAX_JSON_CONTAINERS:
        raise CallError(
            ErrorClass.too_large,
            f"the reply holds {n:,} JSON objects and arrays (more than {MAX_JSON_CONTAINERS:,})",
        )


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
    `too_large` error, never more memory. One step yields at most `STEP` bytes, so a compressed
    read that inflates to megabytes is handed out (and parsed) piece by piece, with the event loop
    free between pieces."""

    STEP = 65_536

    def __init__(self, resp: aiohttp.ClientResponse, limit: int) -> None:
        self.content = resp.content
        self.limit = limit
        self.size = 0
        self.wire = 0
        self.encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        self.inflate: Any = None
        self.pending = b""  # compressed bytes not yet inflated
        # refused when first read, so that an error status is classified before its body
        self.supported = self.encoding in ("", "identity", "gzip", "x-gzip", "deflate")
        if self.encoding in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self.inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header

    def _check(self, n: int) -> None:
        if n > self.limit:
            raise CallError(
                ErrorClass.too_large,
                f"the reply passed {self.limit:,} bytes (raise the endpoint's"
                " limits.max_response_bytes if such replies are legitimate)",
            )

    def _grow(self, n: int) -> None:
        self.size += n
        self._check(self.size)

    async def readany(self) -> bytes:
        """The next bytes of the body (b"" at its end)."""
        if not self.supported:
            raise CallError(
                ErrorClass.bad_response, f"unsupported Content-Encoding {self.encoding[:40]!r}"
            )
        if self.inflate is None:
            data = await self.content.read(self.STEP)
            self._grow(len(data))
            return data
        while True:
            if not self.pending:
                self.pending = await self.content.read(self.STEP)
                self.wire += len(self.pending)
                self._check(self.wire)  # compressed bytes count too
                if not self.pending:  # end of the body
                    if not self.inflate.eof:
                        raise CallError(ErrorClass.bad_response, "compressed body cut short")
                    return b""
            else:
                await asyncio.sleep(0)  # a step of the same read: let the other calls run
            if self.inflate.eof:
                # bytes after the end of the compressed body: a second member, or a flood
                # zlib would only pile up, unread and uncounted
                raise CallError(
                    ErrorClass.bad_response, "bytes after the end of the compressed body"
                )
            try:
                data = self.inflate.decompress(self.pending, self.STEP)
            except zlib.error as e:
                raise CallError(
                    ErrorClass.bad_response, f"cannot decompress the body: {e}"
                ) from None
            self.pending = self.inflate.unconsumed_tail or (
                self.inflate.unused_data if self.inflate.eof else b""
            )
            if data:
                self._grow(len(data))
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
