"""A hosted provider that scores prompts, in front of a real model (`FakeConfig.model_server`).

The fake answers as a hosted provider that serves a model the user cannot run, and whose
`/v1/completions` returns prompt log-probabilities in the OpenAI legacy shape that Fireworks- and
Together-style providers document for `echo: true` with `logprobs: N`:

- `choices[0].text` the prompt (and what was generated), `choices[0].logprobs` with `tokens` (every
  prompt token's text, special tokens as their text), `token_logprobs` (the first null: nothing
  conditions it), `top_logprobs` (the first null, then up to N + 1 alternatives by text) and
  `text_offset` (each token's character offset in `text`);
- `max_tokens: 0` scores without generating (`usage.completion_tokens` 0); with `max_tokens: 1` the
  one generated token follows the prompt's;
- no `/apply-template`, `/tokenize` or `prompt_logprobs`: a scorer must know the chat template
  from elsewhere (a `tokenizer_config.json`, `audit.scorer_template`).

Every number is the model's: the request goes to `model_server` (a llama.cpp server started by
llama-cpp-python: `echo` + `logprobs` there, `max_tokens: 1`, since 0 means "no limit" to it), and
its answer is rewritten into the shape above. That server's echo leaves out every BOS token (SmolLM2's
BOS is `<|im_start|>`, which opens every turn) and renders other special tokens as `''`: the
persona puts each back with its text from the prompt — with a null log-probability where the
server gave none (a number it was not given is never made up). Chat calls, and completions without
`echo`, pass through unchanged (streams included).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeServer

_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<s>|</s>")
"""A special token's text in a prompt (ChatML, Llama-3 and SentencePiece spellings)."""
_HOP = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


def add_routes(app: web.Application, server: FakeServer) -> None:
    """`/v1/chat/completions` and `/v1/completions` proxied to the server's `model_server`."""
    proxy = _ScoringProxy(server)
    app.router.add_post("/v1/chat/completions", proxy.chat)
    app.router.add_post("/v1/completions", proxy.completions)
    app.on_cleanup.append(proxy.close)


class _ScoringProxy:
    def __init__(self, server: FakeServer) -> None:
        url = server.config.model_server
        assert url is not None
        self.upstream = url.rstrip("/")
        self.server = server
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            from bakeoff.endpoints import open_session

            self._session = open_session(total=600)
        return self._session

    async def close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._pass(request, "/chat/completions", await request.read())

    async def completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "the body is not JSON")
        if not (isinstance(body, dict) and body.get("echo") and body.get("logprobs")):
            return await self._pass(request, "/completions", raw)
        prompt, want = body.get("prompt"), body.get("max_tokens", 16)
        if not isinstance(prompt, str) or not isinstance(want, int) or want < 0:
            return _error(400, "echo scoring takes one prompt string and max_tokens ≥ 0")
        if body.get("stream"):
            return _error(400, "echo with logprobs is not streamed")
        up = {**body, "max_tokens": max(want, 1), "stream": False}
        async with self.session().post(self.upstream + "/completions", json=up) as r:
            answer = await r.read()
            if r.status != 200:
                return web.Response(body=answer, status=r.status, content_type="application/json")
        try:
            out = scored(prompt, orjson.loads(answer), keep_generated=want > 0)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            return _error(502, f"the model server's echo could not be read: {e}")
        out["model"] = self.server.config.model
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _pass(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse:
        """The request sent on unchanged, its answer streamed back as it comes."""
        headers = {"Content-Type": "application/json"}
        async with self.session().post(self.upstream + path, data=raw, headers=headers) as r:
            resp = web.StreamResponse(status=r.status)
            for k, v in r.headers.items():
                if k.lower() not in _HOP:
                    resp.headers[k] = v
            await resp.prepare(request)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    return web.json_response(body, status=status)


def scored(prompt: str, upstream: dict[str, Any], *, keep_generated: bool) -> dict[str, Any]:
    """The provider's answer from llama-cpp-python's echo of `prompt` (see the module docstring):
    every prompt token listed with its text and offset in `prompt`, the first one's numbers null,
    the generated tokens kept or dropped."""
    choice = upstream["choices"][0]
    lp = choice["logprobs"]
    usage = upstream.get("usage") or {}
    n_gen = min(int(usage.get("completion_tokens") or 0), len(lp["tokens"]))
    cut = len(lp["tokens"]) - n_gen
    rows = list(zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True))
    tokens, lps, tops, offsets = _aligned(prompt, rows[:cut])
    text = prompt
    if keep_generated:
        for tok, v, top in rows[cut:]:
            offsets.append(len(text))
            tokens.append(tok)
            lps.append(v)
            tops.append(top)
            text += tok
    if lps:
        lps[0], tops[0] = None, None
    n_prompt = int(usage.get("prompt_tokens") or len(tokens))
    n_out = n_gen if keep_generated else 0
    return {
        "id": upstream.get("id", "cmpl-fake"),
        "object": "text_completion",
        "created": upstream.get("created", 0),
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": lps,
                    "top_logprobs": tops,
                    "text_offset": offsets,
                },
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": n_prompt,
            "completion_tokens": n_out,
            "total_tokens": n_prompt + n_out,
        },
    }


def _aligned(
    prompt: str, rows: list[tuple[str, float | None, dict[str, float] | None]]
) -> tuple[list[str], list[float | None], list[dict[str, float] | None], list[int]]:
    """The prompt's tokens laid over its text: a special token the server left out (a BOS) put
    back with null numbers, one it rendered as '' given its text."""
    tokens: list[str] = []
    lps: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    pos = 0
    for tok, v, top in rows:
        while (m := _SPECIAL.match(prompt, pos)) is not None and (tok or "") != m.group():
            if tok == "":  # a special token rendered as '': this row is it
                break
            tokens.append(m.group())  # left out by the server: its numbers unknown
            lps.append(None)
            tops.append(None)
            offsets.append(pos)
            pos = m.end()
        m = _SPECIAL.match(prompt, pos)
        piece = m.group() if tok == "" and m is not None else tok
        tokens.append(piece)
        lps.append(v)
        tops.append(top)
        offsets.append(pos)
        if prompt.startswith(piece, pos):
            pos += len(piece)
    return tokens, lps, tops, offsets
