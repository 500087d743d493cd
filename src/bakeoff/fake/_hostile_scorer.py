"""A hostile reference scorer server: a real loopback HTTP server whose every mode answers one
route of a reference scorer's server wrongly — endless, dripping, absurd counts, wrong shapes,
NaN and infinities, secrets echoed in errors. Each mode lives under its own path prefix:
`http://127.0.0.1:PORT/<mode>/v1` is the base URL of a server in that mode.

Beside the hostile route, a mode's server is the toy model of `_vllm.py` speaking either
llama.cpp's dialect (`family` "echo": `/apply-template`, `/v1/completions` with echo and
`logprobs`, no `/tokenize`) or vLLM's (`family` "vllm": `/tokenize`, `/detokenize`,
`prompt_logprobs` by token ids). Every mode also answers `/v1/chat/completions` with one fixed
sentence (a reference endpoint that serves its samples well and scores them badly).

`sent[mode]` counts the bytes an endless mode has written (what the client made it send).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import orjson
from aiohttp import web

from bakeoff.fake import _vllm as toy

REPLY = "The capital of France is Paris."
LIT = "__literal__"
"""A value the answer's JSON bytes replace with the mode's literal (`-Infinity`, `NaN`)."""

HOSTILE_SCORER: dict[str, tuple[str, str]] = {
    # sizes and time: each must end within the call's deadline, memory bounded
    "endless_body": ("echo", "/v1/completions answers 200 with a body that never ends"),
    "endless_error": ("echo", "/v1/completions answers 500 with a body that never ends"),
    "endless_tokenize": ("vllm", "/tokenize (the vLLM probe) answers 200 forever"),
    "logprobs_flood": ("echo", "a 60 MB answer of `{}` top-k maps (20 million objects)"),
    "drip": ("echo", "/v1/completions answers a byte every 0.25 s for 150 s, then its JSON"),
    # counts: bounded by what was sent
    "prompt_tokens_1e7": ("echo", "`usage.prompt_tokens: 10**7`"),
    "prompt_tokens_1e12": ("echo", "`usage.prompt_tokens: 10**12`"),
    # shapes
    "usage_list": ("echo", "`usage: [1]`"),
    "prompt_tokens_string": ("echo", '`usage.prompt_tokens: "lots"`'),
    "tokens_int": ("echo", "`logprobs.tokens` are integers"),
    "logprob_object": ("echo", "`token_logprobs` entries are `{}`"),
    "top_list": ("echo", "`top_logprobs` values are lists"),
    "top_string": ("echo", "`top_logprobs` values are strings"),
    "template_list": ("echo", "/apply-template answers a list"),
    "html_200": ("echo", "every scoring route answers 200 with an HTML login page"),
    "index_mixed": ("vllm", 'choices indexed 0 and "1"'),
    # non-finite numbers
    "neg_infinity": ("echo", "a `-Infinity` literal in `token_logprobs` (Python's json.dumps)"),
    "nan_literal": ("echo", "a `NaN` literal in `token_logprobs`"),
    "nan_string": ("echo", '`token_logprobs` entries `"NaN"`'),
    "inf_string": ("echo", '`token_logprobs` entries `"-inf"`'),
    # keys
    "secret_401": ("echo", "401 whose body echoes the Authorization header and the key"),
}
"""Mode → (the dialect of the rest of its server, what its hostile route does)."""

HTML = b"<!doctype html><html><head><title>Sign in</title></head><body><form>...</form></body>"


class HostileScorerServer:
    """The modes of `HOSTILE_SCORER` on one loopback port (aiohttp, in the caller's loop)."""

    def __init__(
        self, *, hostile_bytes: int = 1_000_000_000, drip_s: float = 0.25, drip_for_s: float = 150
    ) -> None:
        self.hostile_bytes = hostile_bytes
        """The most an endless mode writes (the client is expected to stop far sooner)."""
        self.drip_s = drip_s
        self.drip_for_s = drip_for_s
        """How long `drip` drips before its answer: past the scorer's default deadline (120 s)."""
        self.sent: dict[str, int] = {}
        self.scoring: dict[str, int] = {}
        """Scoring requests (anything but chat) received per mode: a bench sends its SIGTERM once
        the run is busy with the scorer."""
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); the server's root URL (`{url}/{mode}/v1`)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{mode}/{route:.*}", self._route)
        app.router.add_get("/{mode}/v1/models", _models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def base_url(self, mode: str) -> str:
        return f"{self.url}/{mode}/v1"

    async def _route(self, request: web.Request) -> web.StreamResponse:
        mode, route = request.match_info["mode"], "/" + request.match_info["route"]
        if mode not in HOSTILE_SCORER:
            return web.json_response({"error": f"no mode {mode}"}, status=404)
        family = HOSTILE_SCORER[mode][0]
        body = orjson.loads(await request.read())
        if route == "/v1/chat/completions":
            return _chat(body)
        self.scoring[mode] = self.scoring.get(mode, 0) + 1
        if mode == "html_200":
            return web.Response(body=HTML, content_type="text/html")
        if mode == "secret_401":
            auth = request.headers.get("Authorization", "")
            detail = f"unauthorized: got {auth}; key {auth.removeprefix('Bearer ')}; " + "x" * 5000
            return web.Response(text=detail, status=401)
        if mode == "endless_tokenize" and route == "/tokenize":
            return await self._endless(request, mode, 200)
        if route == "/v1/completions" and mode == "logprobs_flood":
            return web.Response(body=_flood(), content_type="application/json")
        if route == "/v1/completions" and mode in ("endless_body", "endless_error"):
            return await self._endless(request, mode, 200 if mode == "endless_body" else 500)
        if family == "echo":
            return await self._echo_family(request, mode, route, body)
        return _vllm_family(mode, route, body)

    async def _endless(self, request: web.Request, mode: str, status: int) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        head = b'{"choices": [{"logprobs": {"tokens": ["'
        chunk = b"a" * 65536
        self.sent[mode] = 0
        with contextlib.suppress(ConnectionError):
            await resp.write(head)
            while self.sent[mode] < self.hostile_bytes:
                self.sent[mode] += len(chunk)
                await resp.write(chunk)
        return resp

    async def _echo_family(
        self, request: web.Request, mode: str, route: str, body: dict[str, object]
    ) -> web.StreamResponse:
        if route == "/apply-template":
            prompt = toy.chat_template(_list(body.get("messages")))
            if mode == "template_list":
                return web.json_response([prompt])
            return web.json_response({"prompt": prompt})
        if route != "/v1/completions":
            return web.json_response({"error": "not found"}, status=404)
        out = _echo_answer(str(body.get("prompt") or ""), _int(body.get("logprobs")), mode)
        raw = orjson.dumps(out)
        if mode == "neg_infinity":
            raw = raw.replace(f'"{LIT}"'.encode(), b"-Infinity")
        if mode == "nan_literal":
            raw = raw.replace(f'"{LIT}"'.encode(), b"NaN")
        if mode != "drip":
            return web.Response(body=raw, content_type="application/json")
        return await self._drip(request, raw)

    async def _drip(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """One space every `drip_s` for `drip_for_s` (JSON allows leading whitespace), then the
        answer: a client whose timeout is per read never times out."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(int(self.drip_for_s / self.drip_s)):
                await resp.write(b" ")
                await asyncio.sleep(self.drip_s)
            await resp.write(raw)
        return resp


@functools.cache
def _flood() -> bytes:
    """Whole, valid JSON: 20 million `{}` (a parser builds an object for every 3 bytes)."""
    head = b'{"choices": [{"index": 0, "logprobs": {"tokens": [], "token_logprobs": [], '
    return head + b'"top_logprobs": [' + b"{}," * 20_000_000 + b"{}]}}]}"


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})


def _chat(body: dict[str, object]) -> web.Response:
    out = {
        "id": "chatcmpl-hostile-scorer",
        "object": "chat.completion",
        "model": body.get("model") or "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }
    if body.get("stream"):
        chunk = {**out, "object": "chat.completion.chunk"}
        chunk["choices"] = [{"index": 0, "delta": {"content": REPLY}, "finish_reason": "stop"}]
        events = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
        return web.Response(body=events, content_type="text/event-stream")
    return web.json_response(out)


def _list(v: object) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: object) -> int:
    """A count the body asks for: 1 when it asks none (or not as a number)."""
    return int(v) if isinstance(v, int | float | str) and v else 1


def _echo_answer(prompt: str, k: int, mode: str) -> dict[str, object]:
    """llama.cpp's echo answer for `prompt` under the toy model, then the mode's damage."""
    ids = toy.tokenize(prompt) or [toy.BOS]
    seq = [*ids, toy.top(ids[-1], 1)[0][0]]
    base = toy.openai_logprobs(seq, min(k, toy.MAX_LOGPROBS))
    lp: dict[str, object] = dict(base)
    usage: Any = {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(seq)}
    n = len(seq)
    if mode == "prompt_tokens_1e7":
        usage["prompt_tokens"] = 10**7
    elif mode == "prompt_tokens_1e12":
        usage["prompt_tokens"] = 10**12
    elif mode == "prompt_tokens_string":
        usage["prompt_tokens"] = "lots"
    elif mode == "usage_list":
        usage = [1]
    elif mode == "tokens_int":
        lp["tokens"] = list(range(n))
    elif mode == "logprob_object":
        lp["token_logprobs"] = [None] + [{}] * (n - 1)
    elif mode in ("top_list", "top_string"):
        lp["top_logprobs"] = [
            None if t is None else {p: [v] if mode == "top_list" else "x" for p, v in t.items()}
            for t in base["top_logprobs"]
        ]
    elif mode in ("neg_infinity", "nan_literal", "nan_string", "inf_string"):
        value = {"nan_string": "NaN", "inf_string": "-inf"}.get(mode, LIT)
        lp["token_logprobs"] = [None] + [value] * (n - 1)
    return {
        "id": "cmpl-hostile",
        "object": "text_completion",
        "choices": [{"index": 0, "text": toy.detokenize(seq), "logprobs": lp}],
        "usage": usage,
    }


def _vllm_family(mode: str, route: str, body: dict[str, object]) -> web.Response:
    """vLLM's /tokenize, /detokenize and prompt_logprobs under the toy model; `index_mixed`
    numbers its second choice "1"."""
    if route == "/tokenize":
        if isinstance(msgs := body.get("messages"), list):
            ids = toy.tokenize(toy.chat_template(msgs))
        else:
            special = bool(body.get("add_special_tokens", True))
            ids = toy.tokenize(str(body.get("prompt") or ""), add_special_tokens=special)
        return web.json_response(
            {"count": len(ids), "max_model_len": toy.MAX_MODEL_LEN, "tokens": ids}
        )
    if route == "/detokenize":
        return web.json_response({"prompt": toy.detokenize(_list(body.get("tokens")))})
    if route != "/v1/completions":
        return web.json_response({"error": "not found"}, status=404)
    p = body.get("prompt")
    prompts = p if isinstance(p, list) and p and isinstance(p[0], list) else [p]
    k = _int(body.get("prompt_logprobs"))
    choices: list[dict[str, object]] = [
        {"index": i, "text": "", "prompt_logprobs": toy.prompt_logprobs(ids, k, None)}
        for i, ids in enumerate(prompts)
    ]
    if mode == "index_mixed" and len(choices) > 1:
        choices[1]["index"] = "1"
    return web.json_response({"id": "cmpl-hostile", "choices": choices})
