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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from bakeoff.endpoints._body import Body
from bakeoff.endpoints._errors import classify_status
from bakeoff.endpoints._request import request_body
from bakeoff.endpoints._session import heap_reads
from bakeoff.endpoints._shapes import (
    _apply_usage,
    _arguments,
    _completion_logprobs,
    _dict,
    _json_object,
    _label,
    _list,
    _logprobs,
    _text,
    usage_of,
)
from bakeoff.endpoints._stream import MAX_RAW_BYTES, StreamReader
from bakeoff.endpoints._types import (
    CallError,
    CallRequest,
    CallResult,
    ErrorClass,
    JsonObject,
    Timings,
    ToolCall,
)


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


@dataclass(frozen=True)
class ClientOptions:
    """How an `EndpointClient` talks to its endpoint, beyond its URL, model and key."""

    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request (after the defaults: they may replace them)."""
    extra_body: Mapping[str, object] = field(default_factory=dict)
    """The provider's body fields (level 2 of `request_body`)."""
    timeouts: Timeouts = field(default_factory=lambda: Timeouts())
    limits: Limits = field(default_factory=lambda: Limits())
    stream_usage: bool = True
    """Ask for usage in the stream (`stream_options.include_usage`)."""
    upstream_field: str | None = "provider"
    """The reply field that names who served it (OpenRouter's `provider`)."""
    drop_fields: frozenset[str] = frozenset()
    """Body fields the endpoint refuses (level 7 of `request_body`)."""


class StoredRequest(TypedDict):
    """A request as it is stored with its call: URL, headers with credentials redacted, body."""

    url: str
    headers: dict[str, str]
    body: JsonObject


MAX_ERROR_BODY = 65_536
"""Of an error reply (4xx/5xx, HTML), only this much is read: 500 characters are kept."""
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
"""Headers that carry a credential: refused in a lineup file (keys come from `api_key_env`), and
redacted before anything is stored (with every header whose name contains `key`)."""


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
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
        options: ClientOptions | None = None,
    ) -> None:
        o = options or ClientOptions()
        self.session = session
        self.drop_fields = o.drop_fields
        """Body fields the endpoint refuses: removed from every request (the stored one too)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeouts = o.timeouts
        self.limits = o.limits
        self.extra_body: JsonObject = dict(o.extra_body)
        self.stream_usage = o.stream_usage
        self.upstream_field = o.upstream_field
        # only the encodings decompressed here, by bounded steps (`_Body`)
        self._headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
            **o.headers,
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.read_bufsize: int | None = None
        """aiohttp's read buffer for each call; None: the session's (aiohttp's default, 64 KiB).
        A 50,000-token reply streamed no faster with 1 or 4 MiB (bench/long_context.py)."""
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeouts.connect, sock_connect=self.timeouts.connect
        )
        heap_reads()

    # -- request building ---------------------------------------------------------------------
    def url_for(self, req: CallRequest) -> str:
        path = "/chat/completions" if req.api == "chat" else "/completions"
        return self.base_url + path

    def body_for(self, req: CallRequest) -> JsonObject:
        """The wire body: `request_body`, with this endpoint's model, provider fields and drops."""
        return request_body(
            self.model,
            req,
            provider=self.extra_body,
            drop=self.drop_fields,
            stream_usage=self.stream_usage,
        )

    def stored_request(self, req: CallRequest) -> StoredRequest:
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
        stream = StreamReader(
            t0,
            is_chat=req.api == "chat",
            max_event=self.limits.max_event_bytes,
            upstream_field=self.upstream_field,
        )
        try:
            async with asyncio.timeout_at(min(start + self.timeouts.first_token, hard_end)) as tm:
                async with self.session.post(
                    url,
                    data=payload,
                    headers=self._headers,
                    timeout=self._client_timeout,
                    allow_redirects=False,
                    auto_decompress=False,
                    read_bufsize=self.read_bufsize,
                ) as resp:
                    body = Body(resp, self.limits.max_response_bytes)
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
                            result = await self._read_stream(body, req, t0, tm, hard_end, stream)
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
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
            phase = "total" if loop.time() >= hard_end - 1e-3 else stream.phase
            raise _wire_error(e, phase) from None

    async def _read_stream(
        self,
        body: Body,
        req: CallRequest,
        t0: int,
        tm: asyncio.Timeout,
        hard_end: float,
        attempt: StreamReader,
    ) -> CallResult:
        """Read the event stream to its end, moving the deadline on as it advances: from the
        first token on, each read may take up to `stall` seconds (never past `hard_end`)."""
        loop = asyncio.get_running_loop()
        stall = self.timeouts.stall
        while True:
            data = await body.readany()
            now = time.perf_counter_ns()
            if not data:
                break
            attempt.feed(data, now)
            if attempt.first_token_seen:
                tm.reschedule(min(loop.time() + stall, hard_end))
        return attempt.finish(time.perf_counter_ns())

    def _parse_body(self, raw: bytes | bytearray, req: CallRequest, t0: int) -> CallResult:
        end_ms = (time.perf_counter_ns() - t0) / 1e6
        obj = _json_object(raw, "body", "malformed JSON body")
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
        _apply_usage(result, usage_of(obj), None)
        text = raw[: MAX_RAW_BYTES + 4].decode("utf-8", "replace")
        result.raw = text if len(raw) <= MAX_RAW_BYTES else text[:MAX_RAW_BYTES] + "…[cut]"
        return result


def _wire_error(e: BaseException, phase: str) -> CallError:
    """The class of a call that the connection or a deadline ended (`phase`: the one it was in)."""
    if isinstance(e, aiohttp.ConnectionTimeoutError):  # before TimeoutError: it is one
        return CallError(ErrorClass.timeout, "connect timeout")
    if isinstance(e, TimeoutError):
        return CallError(ErrorClass.timeout, f"{phase} timeout")
    if isinstance(e, aiohttp.ClientPayloadError):
        return CallError(
            ErrorClass.connection_error, f"connection closed mid-response: {_short(e)}"
        )
    if isinstance(e, aiohttp.ClientConnectorError):
        return CallError(ErrorClass.connection_error, f"cannot connect: {_short(e)}")
    return CallError(ErrorClass.connection_error, _short(e))


def _short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}"
    return s[:300]
