"""The fake provider: a real OpenAI-compatible HTTP server on loopback with scripted outputs and faults.

It speaks `/v1/chat/completions` and `/v1/completions` (streaming or not, usage in the stream when asked),
and `/v1/models`; persona `vllm` also vLLM's scoring routes (`_vllm.py`: a toy model's prompt
log-probabilities, `/tokenize`, `/detokenize`). Replies come from a mode (echo / script / fixed),
are cut at `max_tokens`, and are sent with a configured time to first token and inter-token delay.
Faults are drawn per request from seeded probabilities, or forced by a marker `[[fault:NAME]]` in
the last user message.

Every request is appended to a log (in memory, at `GET /_fake/log`, and to a JSONL file if given) so
tests can count what the server really served.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bakeoff.endpoints import open_session
from bakeoff.fake._events import DONE, LogEntry, _burst, _Events, _paced, _Planned, _tail
from bakeoff.fake._faults import ToolCall, _cut, _early_fault
from bakeoff.fake._hostile import HOSTILE, _hostile, _until
from bakeoff.fake._openrouter import forward, route
from bakeoff.fake._personas import (
    PERSONAS,
    Ledger,
    Upstream,
    endpoints_listing,
    refused,
    usage_for,
)

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
    "credits": "402 out of credits (OpenRouter)",
    "wrong_upstream": "served by another upstream than the one the routing pinned",
}
_MARKER = re.compile(r"\[\[fault:([a-z_]+)\]\]")
_TOKEN = re.compile(r"\s*\S+|\s+$")
T0 = web.RequestKey("t0", float)
T0_NS = web.RequestKey("t0_ns", int)


class FakeConfig(BaseModel):
    """How the fake server behaves."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    mode: str = "echo"
    """`echo` (last user message), `script` (exact prompt → reply), `fixed` (always `reply`)."""
    script: dict[str, str | dict[str, object]] = Field(default_factory=dict)
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
    context_length: int | None = Field(default=None, ge=1)
    """Refuse a prompt of more tokens than this with the persona's context error (a 400), as a
    server with a context limit does (default: no limit)."""
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
    persona: str | None = None
    """Answer as this provider does (`bakeoff.fake._personas.PERSONAS`: its error bodies, refused
    fields, usage form, cost, cached tokens, serving upstream)."""
    upstreams: list[Upstream] = Field(default_factory=list)
    """Persona `openrouter`: the model's upstreams (`name`, `tag`, `quantization`,
    `context_length`, `max_completion_tokens`, `prompt_per_m`, `completion_per_m`), listed at
    `/v1/models/{author}/{slug}/endpoints`; a request is served by the one its routing names."""
    price_per_m: tuple[float, float, float] = (1.0, 2.0, 0.25)
    """Persona cost: $ per 1M prompt, completion and cached prompt tokens."""
    log_file: str | None = None
    markers: bool = True
    """Obey `[[fault:NAME]]` in the prompt (off: a healthy server beside a hostile one)."""
    hostile_bytes: int = 1_000_000_000
    """What an endless hostile reply sends at most (the client is expected to stop far sooner)."""
    model_server: str | None = None
    """A real model's OpenAI-compatible base URL (a llama.cpp server): every chat and completions
    call is passed to it, and `/v1/completions` with `echo` + `logprobs` is answered as a hosted
    provider scores prompts (`_scoring_proxy.py`): the numbers are that model's, not scripted."""


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _last_user(body: dict[str, object]) -> str:
    if "messages" in body:
        msgs = body.get("messages") or []
        for m in reversed(msgs if isinstance(msgs, list) else []):
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
        self.log: list[LogEntry] = []
        self._faults_by_prompt: dict[str, int] = {}
        self._log_fh = open(self.config.log_file, "ab") if self.config.log_file else None  # noqa: SIM115
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.in_flight = 0
        self._slots = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None
        self.persona = PERSONAS[self.config.persona] if self.config.persona else None
        self.ledger = Ledger()
        """What the persona billed (its `usage.cost` of every reply)."""
        self._session: aiohttp.ClientSession | None = None

    # -- app -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        if self.config.model_server is not None:
            from bakeoff.fake._scoring_proxy import add_routes as proxy_routes

            proxy_routes(app, self)  # chat and completions answered by a real model
        elif self.persona is not None and self.persona.name == "vllm":
            app.router.add_post("/v1/chat/completions", self._chat)
            from bakeoff.fake._vllm import add_routes

            add_routes(app, self)  # /tokenize, /detokenize, scoring on /v1/completions
        else:
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{author}/{slug}/endpoints", self._endpoints)
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
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    # -- helpers ---------------------------------------------------------------------------------
    def _record(self, entry: LogEntry) -> None:
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

    def _reply(self, prompt: str) -> tuple[str, list[dict[str, object]]]:
        """The reply text and tool calls for a prompt."""
        c = self.config
        if c.mode == "echo":
            return _MARKER.sub("", prompt), []
        if c.mode == "script":
            found = c.script.get(prompt, c.reply)
            if isinstance(found, dict):
                calls = found.get("tool_calls") or []
                return str(found.get("content") or ""), list(
                    calls if isinstance(calls, list) else []
                )
            return found, []
        if c.reply_tokens is not None:
            return " tok" * c.reply_tokens, []
        return c.reply, []

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
        )

    async def _endpoints(self, request: web.Request) -> web.Response:
        model = f"{request.match_info['author']}/{request.match_info['slug']}"
        if model != self.config.model or not self.config.upstreams:
            why = "Model not found" if model != self.config.model else "No upstreams listed"
            hint = "the fake lists a model's upstreams with --model AUTHOR/SLUG --upstreams FILE"
            return web.json_response(
                {"error": {"code": 404, "message": f"{why} ({hint})"}}, status=404
            )
        return web.json_response(endpoints_listing(model, self.config.upstreams))

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
        limit = self.config.context_length
        if fault is None and limit is not None and len(_tokens(prompt)) > limit:
            fault = "context"
        entry: LogEntry = {
            "t": t_arrive,
            "path": request.path,
            "prompt": prompt,
            "fault": fault,
            "stream": bool(body.get("stream")),
            "auth": bool(request.headers.get("Authorization")),
            "body_keys": sorted(body),
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
        self,
        request: web.Request,
        body: dict[str, object],
        prompt: str,
        fault: str | None,
        chat: bool,
    ) -> web.StreamResponse:
        no = refused(self.persona, body) if self.persona else None
        if no is not None:
            return web.json_response(no[1], status=no[0])
        early = _early_fault(fault, self.config)
        if early is not None:
            return early
        if fault in HOSTILE:
            assert fault is not None
            return await _hostile(request, fault, chat, bool(body.get("stream")), self.config)
        up, no_route = route(body, self.config.upstreams, fault == "wrong_upstream")
        if no_route is not None:
            return web.json_response(no_route[1], status=no_route[0])
        if up is not None and up.get("backend"):
            return await forward(request, self._backends(), body, up, chat, self._costed(prompt))
        r = self._planned(body, prompt, fault, chat)
        if not body.get("stream"):
            return await self._whole(r, fault, chat)
        return await self._stream(request, body, r, fault, chat)

    def _planned(
        self, body: dict[str, object], prompt: str, fault: str | None, chat: bool
    ) -> _Planned:
        """The reply to send: its tokens (cut at `max_tokens`), tool calls, finish reason, usage."""
        reply, calls = self._reply(prompt)
        toks = _tokens(reply)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and len(toks) > max_tokens:
            toks = toks[:max_tokens]
            finish = "length"
        tool_calls: list[ToolCall] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": str(tc["name"]),
                    "arguments": orjson.dumps(tc.get("arguments", {})).decode(),
                },
            }
            for i, tc in enumerate(calls if chat else [])
        ]
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        created = int(time.time())
        n_prompt = len(_tokens(prompt))
        return _Planned(
            toks=toks,
            finish=finish,
            tool_calls=tool_calls,
            usage=usage_for(
                self.persona,
                self.ledger,
                prompt,
                {
                    "prompt_tokens": n_prompt,
                    "completion_tokens": len(toks),
                    "total_tokens": n_prompt + len(toks),
                },
                self.config.price_per_m,
            ),
            cid=f"fake-{created}-{len(self.log)}",
            created=created,
            slow=10.0 if fault == "slow" else 1.0,
            upstream=self._upstream_name(body, fault),
        )

    def _upstream_name(self, body: dict[str, object], fault: str | None) -> str | None:
        up, _ = route(body, self.config.upstreams, fault == "wrong_upstream")
        return up["name"] if up is not None else self.config.upstream

    def _backends(self) -> aiohttp.ClientSession:
        """One client for the upstreams' real backends (persona `openrouter`), closed at stop."""
        if self._session is None:
            # the caller's client times each call; an hour is the most a backend may take
            self._session = open_session(total=3600.0, limit=0)
        return self._session

    def _costed(self, prompt: str) -> Any:
        def usage(u: dict[str, object]) -> dict[str, object]:
            keys = ("prompt_tokens", "completion_tokens", "total_tokens")
            counts = {k: int(v) for k in keys if isinstance(v := u.get(k), int)}
            return usage_for(self.persona, self.ledger, prompt, counts, self.config.price_per_m)

        return usage

    async def _whole(self, r: _Planned, fault: str | None, chat: bool) -> web.Response:
        """An unstreamed reply, after the time the stream would have taken."""
        c = self.config
        if c.ttft_ms or c.itl_ms:
            await asyncio.sleep(r.slow * (c.ttft_ms + c.itl_ms * max(len(r.toks) - 1, 0)) / 1000)
        text = "".join(r.toks)
        choice: dict[str, object] = {"index": 0, "finish_reason": r.finish}
        if chat:
            message: dict[str, object] = {
                "role": "assistant",
                "content": text or (None if r.tool_calls else ""),
            }
            if r.tool_calls:
                message["tool_calls"] = r.tool_calls
            choice["message"] = message
        else:
            choice["text"] = text
        out: dict[str, object] = {
            "id": r.cid,
            "object": "chat.completion" if chat else "text_completion",
            "created": r.created,
            "model": c.model,
            "choices": [] if fault == "no_choices" else [choice],
            "usage": r.usage,
        }
        if r.upstream:
            out["provider"] = r.upstream
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, object],
        r: _Planned,
        fault: str | None,
        chat: bool,
    ) -> web.StreamResponse:
        """A streamed reply: tokens on an absolute schedule from the request's arrival (token i
        at arrival + ttft + i * itl, so sleep overshoot does not accumulate), cut where a fault
        says."""
        c = self.config
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        ev = _Events(r, c, chat, request[T0_NS])
        usage_key = self._usage_key(body)

        def tail() -> list[bytes]:  # stamped when sent
            return _tail(ev, r, usage_key)

        ttft, itl = r.slow * c.ttft_ms / 1000, r.slow * c.itl_ms / 1000
        t0 = request[T0]
        if ttft:
            await _until(t0 + ttft)
        if fault == "no_choices":
            await resp.write(DONE)
            return resp
        cut_at = len(r.toks) // 2 if fault in ("truncate", "reset", "stall", "malformed") else None
        if itl == 0 and cut_at is None:
            await _burst(resp, ev, r.toks, tail)
            return resp
        if not await _paced(resp, ev, r.toks, cut_at, t0 + ttft, itl):
            return await _cut(resp, request, fault, c)
        for e in tail():
            await resp.write(e)
        await resp.write(DONE)
        return resp

    def _usage_key(self, body: dict[str, object]) -> str | None:
        """Where a stream's usage goes (`usage`, or the persona's own key), None when it sends
        none (not asked, and the persona does not send it anyway)."""
        opts = body.get("stream_options")
        want = isinstance(opts, dict) and bool(opts.get("include_usage"))
        if self.persona is None:
            return "usage" if want else None
        want = want or self.persona.usage_always or self.persona.usage_in != "usage"
        return self.persona.usage_in if want else None


def load_script(path: str | Path) -> dict[str, str | dict[str, object]]:
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
