"""The wire client: one attempt of one OpenAI-compatible call, timed chunk by chunk.

Hot path. Every read from the socket is stamped with `perf_counter_ns` before any parsing; each SSE
event takes the stamp of the read that completed it. Timeouts use one `asyncio.Timeout` whose deadline
is moved as the stream advances (connect → first token → stall between chunks), so a healthy stream
costs no extra tasks or timers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, Field

from bakeoff.endpoints._errors import classify_error_object, classify_status
from bakeoff.endpoints._sse import SSEParser
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

    connect: float = Field(default=10.0, gt=0, le=86400, allow_inf_nan=False)
    """TCP (and TLS) connection set-up."""
    first_token: float = Field(default=120.0, gt=0, le=86400, allow_inf_nan=False)
    """From sending the request to the first token (or the whole body when not streaming)."""
    stall: float = Field(default=60.0, gt=0, le=86400, allow_inf_nan=False)
    """Longest silence allowed between two chunks of a stream."""
    total: float = Field(default=600.0, gt=0, le=7 * 86400, allow_inf_nan=False)
    """Whole call, whatever the phase."""


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as they may be stored: credentials replaced."""
    out = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk in ("authorization", "api-key", "x-api-key", "proxy-authorization") or "key" in lk:
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
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeouts = timeouts or Timeouts()
        self.extra_body = dict(extra_body or {})
        self.stream_usage = stream_usage
        self.upstream_field = upstream_field
        self._headers = {"Content-Type": "application/json", **(headers or {})}
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
                    url, data=payload, headers=self._headers, timeout=self._client_timeout
                ) as resp:
                    if resp.status >= 400:
                        body = (await resp.read()).decode("utf-8", "replace")
                        raise classify_status(
                            resp.status,
                            body,
                            resp.headers.get("Content-Type", ""),
                            resp.headers.get("Retry-After"),
                        )
                    ctype = resp.headers.get("Content-Type", "")
                    if "html" in ctype:
                        body = (await resp.read()).decode("utf-8", "replace")
                        raise CallError(
                            ErrorClass.bad_response,
                            f"HTML page instead of JSON (HTTP {resp.status})",
                            status=resp.status,
                            body=body[:500],
                        )
                    if req.stream and "text/event-stream" in ctype:
                        result = await self._read_stream(resp, req, t0, tm, hard_end, loop, phase)
                    else:
                        raw = await resp.read()
                        result = self._parse_body(raw, req, t0)
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
        resp: aiohttp.ClientResponse,
        req: CallRequest,
        t0: int,
        tm: asyncio.Timeout,
        hard_end: float,
        loop: asyncio.AbstractEventLoop,
        phase: list[str],
    ) -> CallResult:
        parser = SSEParser()
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
        content = resp.content
        is_chat = req.api == "chat"
        first_token_seen = False
        while True:
            data = await content.readany()
            now = time.perf_counter_ns()
            if not data:
                break
            if timings.first_byte_ms is None:
                timings.first_byte_ms = (now - t0) / 1e6
            ms = (now - t0) / 1e6
            for ev in parser.feed(data):
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
                    result.upstream = str(obj[self.upstream_field])
                if result.response_model is None and obj.get("model"):
                    result.response_model = str(obj["model"])
                choices = obj.get("choices")
                if not choices:
                    continue
                ch = choices[0]
                token = False
                if is_chat:
                    delta = ch.get("delta") or {}
                    c = delta.get("content")
                    if c:
                        text_parts.append(c)
                        token = True
                    r = delta.get("reasoning_content") or delta.get("reasoning")
                    if r:
                        reasoning_parts.append(r)
                        token = True
                    tcs = delta.get("tool_calls")
                    if tcs:
                        token = True
                        for tc in tcs:
                            _merge_tool_delta(tools, tc)
                    if not token and delta.get("role") and timings.role_ms is None:
                        timings.role_ms = ms
                    lp = ch.get("logprobs")
                    if lp and lp.get("content"):
                        if logprobs is None:
                            logprobs = []
                        logprobs.extend(lp["content"])
                else:
                    c = ch.get("text")
                    if c:
                        text_parts.append(c)
                        token = True
                    lp = ch.get("logprobs")
                    if lp:
                        if logprobs is None:
                            logprobs = []
                        logprobs.append(lp)
                if ch.get("finish_reason"):
                    result.finish_reason = ch["finish_reason"]
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

    def _parse_body(self, raw: bytes, req: CallRequest, t0: int) -> CallResult:
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
        choices = obj.get("choices")
        if not choices:
            raise CallError(ErrorClass.bad_response, "response has no choices")
        ch = choices[0]
        result = CallResult(
            timings=Timings(sent_ns=t0, first_byte_ms=end_ms, end_ms=end_ms),
            finish_reason=ch.get("finish_reason"),
            response_model=obj.get("model"),
        )
        if self.upstream_field and obj.get(self.upstream_field):
            result.upstream = str(obj[self.upstream_field])
        if req.api == "chat":
            msg = ch.get("message") or {}
            result.text = msg.get("content") or ""
            result.reasoning = msg.get("reasoning_content") or msg.get("reasoning")
            for i, tc in enumerate(msg.get("tool_calls") or []):
                fn = tc.get("function") or {}
                args = fn.get("arguments")
                result.tool_calls.append(
                    ToolCall(
                        id=tc.get("id") or f"call_{i}",
                        name=fn.get("name"),
                        arguments=args if isinstance(args, str) else orjson.dumps(args).decode(),
                    )
                )
            lp = ch.get("logprobs")
            if lp and lp.get("content"):
                result.logprobs = lp["content"]
        else:
            result.text = ch.get("text") or ""
            if ch.get("logprobs"):
                result.logprobs = [ch["logprobs"]]
        _apply_usage(result, obj.get("usage"), None)
        text = raw.decode("utf-8", "replace")
        result.raw = text if len(text) <= MAX_RAW_BYTES else text[:MAX_RAW_BYTES] + "…[cut]"
        return result


def _merge_tool_delta(tools: dict[int, ToolCall], tc: dict[str, Any]) -> None:
    idx = tc.get("index", len(tools))
    cur = tools.get(idx)
    if cur is None:
        cur = tools[idx] = ToolCall()
    if tc.get("id"):
        cur.id = tc["id"]
    fn = tc.get("function") or {}
    if fn.get("name"):
        cur.name = (
            (cur.name or "") + fn["name"] if cur.name and cur.name != fn["name"] else fn["name"]
        )
    args = fn.get("arguments")
    if args:
        cur.arguments += args if isinstance(args, str) else orjson.dumps(args).decode()


def _apply_usage(result: CallResult, usage: Any, n_token_chunks: int | None) -> None:
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = usage.get("completion_tokens")
        result.usage_source = "usage"
    elif n_token_chunks is not None:
        result.completion_tokens = n_token_chunks
        result.usage_source = "chunks"


def _short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}"
    return s[:300]
