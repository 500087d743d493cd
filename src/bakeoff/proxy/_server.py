"""The distortion proxy: a loopback OpenAI-compatible server in front of a real endpoint that silently
misbehaves in one known way — a provider with a fault we can calibrate the audit against.

Distortions (any combination): prompt truncation to the last N tokens, system-prompt injection, forced
greedy decoding, routing a fraction of requests to another endpoint, switching every request to
another endpoint after the first N, output capped at N tokens, added latency. Responses (streamed
or not) are passed back byte for byte: streaming, logprobs and usage are untouched unless the
distortion changes them. Each request is logged (`GET /_proxy/log`).
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from typing import TypedDict

import aiohttp
import orjson
from aiohttp import web

from bakeoff.lineups import ProxySpec
from bakeoff.proxy._tokens import Tokenizer, WordTokenizer

_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


def truncate_messages(
    messages: list[dict[str, object]], limit: int, tok: Tokenizer
) -> tuple[list[dict[str, object]], int]:
    """Keep the newest `limit` content tokens of a chat; system messages are kept whole and count.

    The oldest non-system content goes first: whole messages while they fit in what must go, then the
    start of the next one. The last message always keeps at least one token, so the request stays
    valid. Returns the new messages and the number of tokens dropped.
    """
    msgs = copy.deepcopy(messages)
    enc = [tok.encode(c) if isinstance(c := m.get("content"), str) else [] for m in msgs]
    excess = sum(len(e) for e in enc) - limit
    dropped = 0
    i = 0
    while excess > 0 and i < len(msgs):
        if msgs[i].get("role") == "system" or not enc[i]:
            i += 1
            continue
        last = i == len(msgs) - 1
        n = len(enc[i])
        if n <= excess and not last:
            excess -= n
            dropped += n
            msgs[i]["content"] = ""
            i += 1
            continue
        cut = min(excess, n - 1)
        msgs[i]["content"] = tok.decode(enc[i][cut:])
        dropped += cut
        excess -= cut
        i += 1
    kept = [m for m, e in zip(msgs, enc, strict=True) if m.get("content") != "" or not e]
    return kept, dropped


class DistortionNote(TypedDict, total=False):
    """What the proxy did to a request (logged with it)."""

    injected_system: bool
    dropped_tokens: int
    forced_greedy: bool
    max_tokens: int


def _messages(body: dict[str, object]) -> list[dict[str, object]]:
    msgs = body.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


class DistortionProxy:
    def __init__(
        self,
        spec: ProxySpec,
        upstream_url: str,
        *,
        upstream_model: str | None = None,
        route_url: str | None = None,
        route_model: str | None = None,
        tokenizer: Tokenizer | None = None,
        switch_url: str | None = None,
        switch_model: str | None = None,
    ) -> None:
        self.spec = spec
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream_model = upstream_model
        self.route_url = route_url.rstrip("/") if route_url else None
        self.route_model = route_model
        self.switch_url = switch_url.rstrip("/") if switch_url else None
        self.switch_model = switch_model
        self.calls = 0
        """Chat and completions requests received (what `switch_after_calls` counts)."""
        self.tok: Tokenizer = tokenizer or WordTokenizer()
        self.rng = random.Random(spec.seed)
        self.log: list[dict[str, object]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None

    def distort(
        self, body: dict[str, object], chat: bool
    ) -> tuple[dict[str, object], DistortionNote]:
        """Apply the distortions to a request body (as it came, and goes, on the wire); return it
        and a note of what was done."""
        s = self.spec
        body = dict(body)
        note: DistortionNote = {}
        if chat and s.inject_system:
            body["messages"] = [{"role": "system", "content": s.inject_system}, *_messages(body)]
            note["injected_system"] = True
        if s.truncate_prompt_tokens:
            if chat:
                body["messages"], dropped = truncate_messages(
                    _messages(body), s.truncate_prompt_tokens, self.tok
                )
            else:
                toks = self.tok.encode(str(body.get("prompt") or ""))
                dropped = max(len(toks) - s.truncate_prompt_tokens, 0)
                body["prompt"] = self.tok.decode(toks[dropped:])
            note["dropped_tokens"] = dropped
        if s.force_greedy:
            body["temperature"] = 0.0
            body.pop("top_p", None)
            note["forced_greedy"] = True
        if s.cap_output_tokens:
            asked = body.get("max_tokens") or body.get("max_completion_tokens")
            cap = s.cap_output_tokens
            if isinstance(asked, int | float | str):
                cap = min(int(asked), cap)
            body["max_tokens"] = cap
            body.pop("max_completion_tokens", None)
            note["max_tokens"] = cap
        return body, note

    # -- server ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_proxy/log", self._get_log)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{host}:{self.port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get_log(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.log), content_type="application/json")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "/models", None, self.upstream_url)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=False)

    async def _handle(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        s = self.spec
        self.calls += 1
        switched = bool(
            self.switch_url
            and s.switch_after_calls is not None
            and self.calls > s.switch_after_calls
            and (
                s.switch_for_calls is None
                or self.calls <= s.switch_after_calls + s.switch_for_calls
            )
        )
        routed = bool(s.route_fraction and self.rng.random() < s.route_fraction)
        target, model = self.upstream_url, self.upstream_model
        if switched and self.switch_url:
            target, model = self.switch_url, self.switch_model
        elif routed and self.route_url:
            target, model = self.route_url, self.route_model
        if model:
            body["model"] = model
        body, note = self.distort(body, chat)
        self.log.append({"t": time.time(), "routed": routed, "switched": switched, **note})
        if s.added_latency_ms:
            await asyncio.sleep(s.added_latency_ms / 1000)
        path = "/chat/completions" if chat else "/completions"
        return await self._forward(request, path, orjson.dumps(body), target)

    async def _forward(
        self, request: web.Request, path: str, data: bytes | None, target: str
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method, target + path, data=data, headers=headers
            ) as up:
                resp = web.StreamResponse(status=up.status)
                for k in ("Content-Type", "Retry-After"):
                    if k in up.headers:
                        resp.headers[k] = up.headers[k]
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except aiohttp.ClientError as e:
            return web.json_response(
                {"error": {"message": f"proxy: upstream unreachable: {type(e).__name__}"}},
                status=502,
            )
