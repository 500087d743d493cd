"""vLLM's scoring routes on the fake server (persona `vllm`), answered by a stated toy model.

What a reference scorer reads from vLLM's OpenAI-compatible server, in vLLM's own shapes:

- `POST /v1/completions` with `echo: true` and `prompt_logprobs: k` (or `logprobs: k`, which
  echo turns into prompt log-probabilities): `choices[i].prompt_logprobs`, one entry per prompt
  token, `null` for the first (nothing conditions it), else `{"<token id>": {"logprob", "rank",
  "decoded_token"}}` holding the prompt's own token (its vocabulary rank, 1 = most likely) and the
  top k; with `logprobs` also the OpenAI `logprobs` object (`tokens`, `token_logprobs` with a
  null first entry, `top_logprobs` keyed by token text, `text_offset`). `max_tokens: 0` with
  echo scores without generating; `max_tokens: 0` without echo is a 400. The prompt is a string
  (BOS added unless `add_special_tokens: false`), a list of token ids, or a list of either (one
  choice per prompt, in order).
- `POST /tokenize`: `{"prompt", "add_special_tokens"}` (default true: BOS added) or
  `{"messages", "add_generation_prompt"}` (the chat template, no BOS beyond the template's) →
  `{"count", "max_model_len", "tokens", "token_strs"}`. `POST /detokenize`: `{"tokens"}` →
  `{"prompt"}`.

The toy model: word pieces of `VOCAB` (a leading space belongs to the word, as in byte-level
BPE), every other byte of the text its own token (so a character outside ASCII is several tokens,
each decoded alone as U+FFFD, as vLLM decodes token by token), four Llama-3-style special tokens.
A token's log-probability depends on the previous token's text only: `BIGRAMS[prev][piece]`,
else `FILLER[piece]`, else `UNSEEN` — " of" after " capital" is −0.339, " France" after " of"
−1.204. Errors come in vLLM's shape (`{"error": {"message", "type", "param", "code"}}`).

Faults (a `[[fault:NAME]]` marker anywhere in the prompt): `VLLM_SCORING_FAULTS`. The config's
`ttft_ms` delays every `/tokenize` and scoring answer (a round trip to a remote server).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, TypedDict

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from bakeoff.fake._server import FakeServer

SPECIAL = {
    "<|begin_of_text|>": 1,
    "<|start_header_id|>": 2,
    "<|end_header_id|>": 3,
    "<|eot_id|>": 4,
}
BOS = SPECIAL["<|begin_of_text|>"]
_BYTE0 = 16
"""Byte b of text no word piece covers is token 16 + b."""
_WORDS = (  # noqa: SIM905 (a word list reads better as words)
    "The capital city first of France Italy Spain is was Paris Rome Madrid the a an and in on to"
    " it that this Bananas sing loudly under green tables What Tell me about answer question"
    " please Hello hi user assistant"
).split()
VOCAB: dict[str, int] = {}
for _i, _w in enumerate(_WORDS):
    VOCAB[_w] = 1000 + 2 * _i
    VOCAB[" " + _w] = 1001 + 2 * _i
for _i, _p in enumerate([".", ",", "?", "!", ":", "\n", "\n\n"]):
    VOCAB[_p] = 900 + _i
_TEXT = {i: t for t, i in {**SPECIAL, **VOCAB}.items()}

BIGRAMS: dict[str, dict[str, float]] = {
    "The": {" capital": -0.25, " city": -2.0, " first": -2.5},
    " capital": {" of": -0.339, " city": -2.1, ",": -2.6},
    " of": {" the": -0.916, " France": -1.204, " Italy": -2.303, " Spain": -2.5},
    " France": {" is": -0.105, ".": -2.5, ",": -3.0},
    " Italy": {" is": -0.2, ".": -2.0},
    " is": {" Paris": -0.02, " Rome": -4.5, " Madrid": -5.0, " the": -5.5},
    " Paris": {".": -0.05, ",": -3.2},
    "\n\n": {"The": -0.7, "Hello": -1.6, "Paris": -2.4},
}
"""log p(piece | previous token's text), stated: the numbers a test checks."""
FILLER: dict[str, float] = {" the": -3.0, " a": -3.5, ",": -4.0, ".": -4.5, " and": -5.0}
"""What every context offers beside its bigrams (so a top-k list is always k long)."""
UNSEEN = -12.0
"""Every other token."""
MAX_MODEL_LEN = 4096
MAX_LOGPROBS = 20
"""vLLM's `--max-logprobs` default: more top log-probabilities per token is a 400."""

VLLM_SCORING_FAULTS = {
    "no_prompt_logprobs": "the choice has no `prompt_logprobs` (a proxy that drops vLLM's fields)",
    "null_prompt_logprob": "a null entry past the first (a server that lost a position)",
    "short_prompt_logprobs": "one entry fewer than the prompt's tokens (the prompt was cut)",
    "shifted_prompt_logprobs": "entry i scores token i + 1 (llama-cpp-python's convention)",
    "other_tokenizer": "entries keyed by other token ids than the prompt's (another tokenizer)",
    "old_max_tokens": "`max_tokens: 0` refused, as vLLM did before echo without generation",
}
_MARKER = re.compile(r"\[\[fault:([a-z_]+)\]\]")
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL) + ")")
_PIECE = re.compile(r" ?[A-Za-z]+| ?\d+|\n\n|\n| ?[^\sA-Za-z\d]|\s")


# -- the toy tokenizer ---------------------------------------------------------------------------
def tokenize(text: str, *, add_special_tokens: bool = False) -> list[int]:
    """Special tokens where their text stands, word pieces of `VOCAB`, bytes for the rest."""
    ids = [BOS] if add_special_tokens else []
    for part in _SPLIT.split(text):
        if part in SPECIAL:
            ids.append(SPECIAL[part])
            continue
        for piece in _PIECE.findall(part):
            if piece in VOCAB:
                ids.append(VOCAB[piece])
            else:
                ids.extend(_BYTE0 + b for b in piece.encode())
    return ids


def known(token_id: Any) -> bool:
    return isinstance(token_id, int) and (token_id in _TEXT or 0 <= token_id - _BYTE0 < 256)


def detokenize(ids: list[int]) -> str:
    out = bytearray()
    for t in ids:
        out += _TEXT[t].encode() if t in _TEXT else bytes([t - _BYTE0])
    return out.decode("utf-8", "replace")


def chat_template(messages: list[dict[str, object]], add_generation_prompt: bool = True) -> str:
    """A Llama-3-style template: the BOS text first, each message in header tokens."""
    out = "<|begin_of_text|>"
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out += f"<|start_header_id|>{m.get('role')}<|end_header_id|>\n\n{content or ''}<|eot_id|>"
    if add_generation_prompt:
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return out


# -- the toy model -------------------------------------------------------------------------------
def logprob(prev: int, token: int) -> float:
    """log p(token | previous token), as stated in `BIGRAMS`, `FILLER`, `UNSEEN`."""
    piece = detokenize([token])
    listed = BIGRAMS.get(detokenize([prev]), {})
    return listed.get(piece, FILLER.get(piece, UNSEEN))


def top(prev: int, k: int) -> list[tuple[int, float]]:
    """The k likeliest tokens after `prev`, likeliest first."""
    ranked = {**FILLER, **BIGRAMS.get(detokenize([prev]), {})}
    best = sorted(ranked.items(), key=lambda kv: -kv[1])[:k]
    return [(VOCAB[p], lp) for p, lp in best]


def rank(prev: int, token: int) -> int:
    """vLLM's rank: 1 + the number of tokens likelier than this one."""
    lp = logprob(prev, token)
    ranked = {**FILLER, **BIGRAMS.get(detokenize([prev]), {})}
    return 1 + sum(v > lp for v in ranked.values())


def _entry(prev: int, token: int, k: int, offset: int = 0) -> dict[str, object]:
    """One position of `prompt_logprobs`: the token itself first, then the top k (keyed by their
    ids + `offset`: another tokenizer's ids)."""
    out: dict[str, object] = {
        str(token + offset): {
            "logprob": logprob(prev, token),
            "rank": rank(prev, token),
            "decoded_token": detokenize([token]),
        }
    }
    for i, (t, lp) in enumerate(top(prev, k)):
        out.setdefault(
            str(t + offset), {"logprob": lp, "rank": i + 1, "decoded_token": detokenize([t])}
        )
    return out


def prompt_logprobs(ids: list[int], k: int, fault: str | None) -> list[Any] | None:
    if fault == "no_prompt_logprobs":
        return None
    out: list[Any] = [None]
    offset = 100_000 if fault == "other_tokenizer" else 0
    for i in range(1, len(ids)):
        out.append(_entry(ids[i - 1], ids[i], k, offset))
    if fault == "null_prompt_logprob" and len(out) > 2:
        out[len(out) // 2] = None
    if fault == "short_prompt_logprobs":
        out = out[:-1]
    if fault == "shifted_prompt_logprobs":
        out = [*out[1:], _entry(ids[-1], top(ids[-1], 1)[0][0], k)]
    return out


class OpenAILogprobs(TypedDict):
    """The `logprobs` object of an OpenAI completions choice."""

    text_offset: list[int]
    token_logprobs: list[float | None]
    tokens: list[str]
    top_logprobs: list[dict[str, float] | None]


def openai_logprobs(ids: list[int], k: int, start: int = 0) -> OpenAILogprobs:
    """The OpenAI `logprobs` object of tokens `ids[start:]`, each decoded alone."""
    tokens: list[str] = []
    lps: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    at = 0
    for i in range(start, len(ids)):
        piece = detokenize([ids[i]])
        tokens.append(piece)
        offsets.append(at)
        at += len(piece)
        if i == 0:
            lps.append(None)
            tops.append(None)
            continue
        own = logprob(ids[i - 1], ids[i])
        lps.append(own)
        alts = {piece: own}
        for t, lp in top(ids[i - 1], k):
            alts.setdefault(detokenize([t]), lp)
        tops.append(alts)
    return {"text_offset": offsets, "token_logprobs": lps, "tokens": tokens, "top_logprobs": tops}


# -- the routes ----------------------------------------------------------------------------------
def _error(message: str, status: int = 400, param: str | None = None) -> web.Response:
    kind = "BadRequestError" if status == 400 else "NotFoundError"
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _body(server: FakeServer, request: web.Request) -> dict[str, object] | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error("Invalid JSON body")
    if not isinstance(body, dict):
        return _error("The request body must be an object")
    if not request.path.endswith("/completions") or wants_scoring(body):
        model = body.get("model")  # the fake's other completions answer any model, as before
        if model is not None and model != server.config.model:
            return _error(f"The model `{model}` does not exist.", 404, "model")
    return body


def _record(server: FakeServer, request: web.Request, body: dict[str, object], text: str) -> None:
    m = _MARKER.search(text) if server.config.markers else None
    server._record(
        {
            "path": request.path,
            "prompt": text,
            "fault": m.group(1) if m else None,
            "body_keys": sorted(body),
            "params": {
                k: body[k] for k in ("max_tokens", "prompt_logprobs", "logprobs") if k in body
            },
        }
    )


async def _latency(server: FakeServer) -> None:
    """The server's time to answer (`ttft_ms`: a round trip to a remote cluster, a prefill)."""
    if server.config.ttft_ms:
        await asyncio.sleep(server.config.ttft_ms / 1000)


async def tokenize_route(server: FakeServer, request: web.Request) -> web.Response:
    body = await _body(server, request)
    if isinstance(body, web.Response):
        return body
    await _latency(server)
    if isinstance(msgs := body.get("messages"), list):
        text = chat_template(msgs, bool(body.get("add_generation_prompt", True)))
        ids = tokenize(text, add_special_tokens=bool(body.get("add_special_tokens", False)))
    elif isinstance(prompt := body.get("prompt"), str):
        text = prompt
        ids = tokenize(text, add_special_tokens=bool(body.get("add_special_tokens", True)))
    else:
        return _error("Either `prompt` or `messages` is required", param="prompt")
    _record(server, request, body, text)
    strs = [detokenize([t]) for t in ids] if body.get("return_token_strs") else None
    out = {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids, "token_strs": strs}
    return web.json_response(out)


async def detokenize_route(server: FakeServer, request: web.Request) -> web.Response:
    body = await _body(server, request)
    if isinstance(body, web.Response):
        return body
    ids = body.get("tokens")
    if not isinstance(ids, list) or not all(known(t) for t in ids):
        return _error("`tokens` must be a list of token ids of this model's vocabulary")
    _record(server, request, body, detokenize(ids))
    return web.json_response({"prompt": detokenize(ids)})


def wants_scoring(body: dict[str, object]) -> bool:
    """A completions request for the toy model: echo or prompt log-probabilities asked."""
    return bool(body.get("echo")) or body.get("prompt_logprobs") is not None


def _prompts(body: dict[str, object]) -> list[list[int]] | str:
    """The request's prompts as token ids, or what is wrong with them."""
    p = body.get("prompt")
    special = bool(body.get("add_special_tokens", True))
    if isinstance(p, str) and p:
        return [tokenize(p, add_special_tokens=special)]
    if isinstance(p, list) and p and all(isinstance(t, int) for t in p):
        p = [p]
    if not isinstance(p, list) or not p:
        return "Either prompt or prompt_embeds must be provided and non-empty."
    out = []
    for one in p:
        if isinstance(one, str) and one:
            out.append(tokenize(one, add_special_tokens=special))
        elif isinstance(one, list) and one and all(known(t) for t in one):
            out.append(list(one))
        else:
            return "each prompt must be a non-empty string or a list of known token ids"
    return out


def _limits(body: dict[str, object]) -> str | None:
    """vLLM's 400s for the fields a scorer sends."""
    for name in ("logprobs", "prompt_logprobs"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or v < -1):
            return f"`{name}` must be a positive value or -1."
        if isinstance(v, int) and v > MAX_LOGPROBS:
            return f"Requested {name} of {v}, which is greater than max allowed: {MAX_LOGPROBS}"
    max_tokens = body.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or max_tokens < 0:
        return "max_tokens must be at least 0"
    if max_tokens == 0 and not body.get("echo"):
        return "max_tokens must be at least 1, got 0."
    return None


async def completions_route(server: FakeServer, request: web.Request) -> web.StreamResponse:
    body = await _body(server, request)
    if isinstance(body, web.Response):
        return body
    if not wants_scoring(body):
        return await server._handle(request, chat=False)
    prompts = _prompts(body)
    if isinstance(prompts, str):
        return _error(prompts, param="prompt")
    text = "".join(detokenize(ids) for ids in prompts)
    _record(server, request, body, text)
    fault = server.log[-1].get("fault")
    if fault == "old_max_tokens" and body.get("max_tokens") == 0:
        return _error("max_tokens must be at least 1, got 0.", param="max_tokens")
    problem = _limits(body)
    if problem is not None:
        return _error(problem)
    await _latency(server)
    answers = [_choice(i, ids, body, fault) for i, ids in enumerate(prompts)]
    choices = [c for c, _ in answers]
    n_prompt = sum(len(ids) for ids in prompts)
    n_out = sum(n for _, n in answers)
    return web.json_response(
        {
            "id": f"cmpl-fake-{len(server.log)}",
            "object": "text_completion",
            "created": 0,
            "model": server.config.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": n_prompt,
                "total_tokens": n_prompt + n_out,
                "completion_tokens": n_out,
                "prompt_tokens_details": None,
            },
        }
    )


def _choice(
    index: int, ids: list[int], body: dict[str, object], fault: str | None
) -> tuple[dict[str, object], int]:
    """One prompt's choice (greedy continuation of `max_tokens`, echo, the log-probabilities) and
    the tokens it generated; the body's fields passed `_limits`."""
    echo = bool(body.get("echo"))
    k_out = _int_or_none(body.get("logprobs"))
    k_prompt = _int_or_none(body.get("prompt_logprobs"))
    if k_prompt is None and echo:
        k_prompt = k_out  # vLLM: echo turns `logprobs` into prompt log-probabilities
    seq = list(ids)
    for _ in range(_int_or_none(body.get("max_tokens", 16)) or 0):
        seq.append(top(seq[-1], 1)[0][0])
    start = 0 if echo else len(ids)
    choice: dict[str, object] = {
        "index": index,
        "text": detokenize(seq[start:]),
        "logprobs": openai_logprobs(seq, k_out, start) if k_out is not None else None,
        "finish_reason": "length",
        "stop_reason": None,
        "prompt_logprobs": prompt_logprobs(ids, k_prompt, fault) if k_prompt is not None else None,
    }
    return choice, len(seq) - len(ids)


def _int_or_none(v: object) -> int | None:
    return v if isinstance(v, int) else None


def add_routes(app: web.Application, server: FakeServer) -> None:
    """vLLM's scoring routes; `/v1/completions` falls back to the fake's own handler when the
    request asks for no echo and no prompt log-probabilities."""

    async def tok(request: web.Request) -> web.Response:
        return await tokenize_route(server, request)

    async def detok(request: web.Request) -> web.Response:
        return await detokenize_route(server, request)

    async def comp(request: web.Request) -> web.StreamResponse:
        return await completions_route(server, request)

    app.router.add_post("/tokenize", tok)
    app.router.add_post("/detokenize", detok)
    app.router.add_post("/v1/completions", comp)
