"""`python -m bakeoff.local._torch_server --model PATH.gguf --alias NAME --port P --threads N`:
the smallest OpenAI-compatible server over PyTorch (transformers), CPU, float32.

The same weights as the llama.cpp servers on another engine, for the fidelity audit: transformers
dequantizes the GGUF and builds its tokenizer and chat template from the file's own metadata; the
forward passes and the sampling loop (KV cache, per-request seeded generator) are in
`_torch_engine.py`, on one worker thread, so the event loop only parses, queues and streams.
Concurrent requests are batched (`--max-batch`, `--batch-window-ms`); `GET /stats` counts the
batch sizes served. The server's own sampler defaults are neutral: no repetition penalty, no top_k,
no min_p (llama.cpp's are 1.1 / 40 / 0.05). `--forced-repetition-penalty X` (a test knob) applies X
to every request whatever it asks: a provider whose sampler cannot be switched off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:  # torch is imported in `main`, after `_quiet_offline`
    from bakeoff.local._torch_engine import Engine, Event, GenRequest


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _error(status: int, message: str, param: str | None = None, code: str | None = None):
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _num(
    body: dict[str, object], keys: tuple[str, ...], default: float, lo: float, hi: float
) -> float:
    """The first of `keys` present and not null in `body`, checked to lie in [lo, hi]."""
    for k in keys:
        v = body.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise BadRequest(f"{k} must be a number in [{lo}, {hi}], got {v!r}", param=k)
        return float(v)
    return default


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # content parts: the text ones, joined
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    raise BadRequest("message content must be a string or a list of content parts", "messages")


def _messages(body: dict[str, object]) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages is required: a non-empty list of {role, content}", "messages")
    out = []
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest("each message needs a string role", "messages")
        out.append({"role": m["role"], "content": _text(m.get("content"))})
    return out


def _stops(body: dict[str, object]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise BadRequest("stop must be a string or a list of strings", "stop")


class TorchServer:
    """The HTTP side: parses requests, hands them to the engine, streams what it emits."""

    def __init__(self, engine: Engine, alias: str, n_ctx: int, seed: int) -> None:
        self.engine = engine
        self.alias = alias
        self.n_ctx = n_ctx
        self._rng = random.Random(seed)  # seeds of requests that send none

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    def _stats(self) -> dict[str, object]:
        sizes, passes = self.engine.stats()
        return {
            "engine": "transformers",
            "batches": sum(sizes.values()),
            "batch_sizes": {str(k): sizes[k] for k in sorted(sizes)},
            "max_batch_size": max(sizes, default=0),
            "forward_passes": passes,
        }

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": self.alias, "object": "model", "owned_by": "bakeoff", "meta": self._stats()}]
        return web.json_response({"object": "list", "data": data}, dumps=_dumps)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._stats(), dumps=_dumps)

    def _request(self, body: dict[str, object], prompt: list[int], emit: Any) -> GenRequest:
        from bakeoff.local._torch_engine import GenRequest

        room = self.n_ctx - len(prompt)
        if room < 1:
            raise BadRequest(
                f"This model's maximum context length is {self.n_ctx} tokens; the messages have "
                f"{len(prompt)} tokens",
                "messages",
                "context_length_exceeded",
            )
        mt = _num(body, ("max_tokens", "max_completion_tokens"), room, 1, 1 << 30)
        top_k = _num(body, ("top_k",), 0, -1, 1 << 30)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise BadRequest("seed must be an integer", "seed")
        return GenRequest(
            prompt=prompt,
            max_tokens=min(int(mt), room),
            emit=emit,
            temperature=_num(body, ("temperature",), 1.0, 0, 100),
            top_p=_num(body, ("top_p",), 1.0, 0, 1),
            top_k=max(int(top_k), 0),
            min_p=_num(body, ("min_p",), 0.0, 0, 1),
            repetition_penalty=_num(body, ("repetition_penalty", "repeat_penalty"), 1.0, 1e-3, 100),
            seed=(seed if seed is not None else self._rng.getrandbits(63)) & ((1 << 63) - 1),
            stop=_stops(body),
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            return _error(400, f"the body is not valid JSON: {e}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(ev: Event) -> None:  # from the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(events.put_nowait, ev)

        try:
            msgs = _messages(body)
            prompt = await asyncio.to_thread(self._tokenize, msgs)
            req = self._request(body, prompt, emit)
        except BadRequest as e:
            return _error(400, str(e), e.param, e.code)
        self.engine.submit(req)
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.alias,
        }
        try:
            if body.get("stream"):
                opts = body.get("stream_options") or {}
                usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
                return await self._stream(request, events, meta, len(prompt), usage)
            return await self._complete(events, meta, len(prompt))
        finally:
            req.cancelled.set()  # a client gone mid-way: its row leaves the batch

    def _tokenize(self, msgs: list[dict[str, str]]) -> list[int]:
        try:
            return self.engine.tokenize(msgs)
        except Exception as e:  # the template refused the messages
            raise BadRequest(f"the chat template refused the messages: {e}", "messages") from e

    async def _complete(
        self, events: asyncio.Queue[Event], meta: dict[str, object], n_prompt: int
    ) -> web.Response:
        parts: list[str] = []
        while True:
            ev = await events.get()
            if ev[0] == "text":
                parts.append(ev[1])
            elif ev[0] == "error":
                return _error(500, ev[1])
            else:
                break
        _, reason, n_out = ev
        msg = {"role": "assistant", "content": "".join(parts)}
        out = {
            **meta,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": msg, "finish_reason": reason}],
            "usage": _usage(n_prompt, n_out),
        }
        return web.json_response(out, dumps=_dumps)

    async def _stream(
        self,
        request: web.Request,
        events: asyncio.Queue[Event],
        meta: dict[str, object],
        n_prompt: int,
        include_usage: bool,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.headers["Cache-Control"] = "no-cache"
        await resp.prepare(request)
        base = {**meta, "object": "chat.completion.chunk"}

        async def send(delta: dict[str, object], reason: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": reason}
            await resp.write(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")

        await send({"role": "assistant", "content": ""})
        while True:
            ev = await events.get()
            if ev[0] == "text":
                await send({"content": ev[1]})
            elif ev[0] == "error":
                err = {"error": {"message": ev[1], "type": "server_error"}}
                await resp.write(b"data: " + orjson.dumps(err) + b"\n\n")
                break
            else:
                await send({}, ev[1])
                if include_usage:
                    tail = {**base, "choices": [], "usage": _usage(n_prompt, ev[2])}
                    await resp.write(b"data: " + orjson.dumps(tail) + b"\n\n")
                break
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _usage(n_prompt: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _quiet_offline() -> None:
    """No hub, no progress bars in the log (read when tqdm and huggingface_hub are imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def load(model_path: Path) -> tuple[Any, Any]:
    """Tokenizer and float32 model from a GGUF (dequantized by transformers), never from a hub."""
    _quiet_offline()
    import gguf
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    d, name = str(model_path.parent), model_path.name
    # transformers asks gguf for the same tensor-name map once per module (~400 times, 20 ms each):
    # memoized while loading; the metadata is parsed once for config, tokenizer and weights
    name_map = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    try:
        config = AutoConfig.from_pretrained(d, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(d, gguf_file=name, config=config)
        model = AutoModelForCausalLM.from_pretrained(
            d, gguf_file=name, config=config, dtype=torch.float32
        )
    finally:
        gguf.get_tensor_name_map = name_map
    model.eval()
    return model, tokenizer


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bakeoff.local._torch_server", description=__doc__)
    p.add_argument("--model", type=Path, required=True, help="a GGUF file")
    p.add_argument("--alias", default="default", help="the model id it answers to")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--n-ctx", type=int, default=2048, help="prompt + completion tokens at most")
    p.add_argument("--seed", type=int, default=0, help="seeds the seeds of requests without one")
    p.add_argument("--max-batch", type=int, default=8, help="requests run together at most")
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=10.0,
        help="how long the first request of a batch waits for company",
    )
    p.add_argument(
        "--forced-repetition-penalty",
        type=float,
        default=None,
        help="test knob: apply this repetition penalty to every request, whatever it asks",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    _quiet_offline()
    import torch

    from bakeoff.local._torch_engine import Engine

    torch.set_num_threads(max(1, args.threads))
    t0 = time.monotonic()
    model, tokenizer = load(args.model)
    print(f"loaded {args.model} in {time.monotonic() - t0:.1f}s", flush=True)
    engine = Engine(
        model,
        tokenizer,
        max_batch=max(1, args.max_batch),
        batch_window_ms=args.batch_window_ms,
        forced_repetition_penalty=args.forced_repetition_penalty,
    )
    engine.start()
    server = TorchServer(engine, args.alias, args.n_ctx, args.seed)
    print(f"serving {args.alias} on http://{args.host}:{args.port}/v1", flush=True)
    try:
        web.run_app(server.app(), host=args.host, port=args.port, print=None, shutdown_timeout=2.0)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
