"""The `openrouter` persona's routing: a call pinned to an upstream (`provider.only`, else `order`)
is served by that upstream — by its real backend when the upstreams file names one
(`backend: http://127.0.0.1:PORT/v1`, `backend_model`), so the fake's upstreams can be real
models. The call is forwarded as OpenRouter forwards it: its own fields (`provider`, `usage`,
`transforms`, `models`, `route`) removed, its sampler fields passed on under the names the upstream
takes (`repetition_penalty` also as llama.cpp's `repeat_penalty`), `logprobs`/`top_logprobs` as
given, streamed or not; the answer comes back with `provider: <upstream name>` on the body or on
every stream event and OpenRouter's `usage.cost`. A routing naming no listed upstream gets
OpenRouter's 404; a backend that fails, its 502 naming the upstream.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import orjson
from aiohttp import web

from bakeoff.fake._personas import Upstream

OPENROUTER_FIELDS = ("provider", "usage", "transforms", "models", "route")
"""Request fields OpenRouter reads itself and does not pass to the upstream."""
NO_UPSTREAM = (
    404,
    {
        "error": {
            "code": 404,
            "message": "No allowed providers are available for the selected model.",
        }
    },
)


def route(
    body: dict[str, object], upstreams: list[Upstream], wrong: bool
) -> tuple[Upstream | None, tuple[int, object] | None]:
    """The upstream serving a request — the first its routing names (`provider.only`, else
    `order`), another one when `wrong`, the first listed when it names none — or OpenRouter's
    error when it names only upstreams not listed."""
    if not upstreams:
        return None, None
    given = body.get("provider")
    routing: dict[str, object] = given if isinstance(given, dict) else {}
    names = routing.get("only") or routing.get("order")
    wanted = [str(n) for n in names] if isinstance(names, list) else []
    tags = [u["tag"] for u in upstreams]
    known = [n for n in wanted if n in tags]
    if wanted and not known:
        return None, NO_UPSTREAM
    idx = tags.index(known[0]) if known else 0
    if wrong:
        idx = (idx + 1) % len(upstreams)
    return upstreams[idx], None


def _upstream_body(body: dict[str, object], up: Upstream) -> dict[str, object]:
    out = {k: v for k, v in body.items() if k not in OPENROUTER_FIELDS}
    if up.get("backend_model"):
        out["model"] = up["backend_model"]
    if "repetition_penalty" in out and "repeat_penalty" not in out:
        out["repeat_penalty"] = out["repetition_penalty"]
    return out


def _provider_error(status: int, raw: str, name: str) -> web.Response:
    body = {
        "error": {
            "code": status,
            "message": "Provider returned error",
            "metadata": {"raw": raw[:500], "provider_name": name},
        }
    }
    return web.json_response(body, status=status)


Costed = Callable[[dict[str, object]], dict[str, object]]
"""The persona's usage (with `cost`) for the backend's usage object."""


def _annotate(obj: dict[str, object], name: str, costed: Costed) -> dict[str, object]:
    obj["provider"] = name
    usage = obj.get("usage")
    if isinstance(usage, dict) and all(
        isinstance(usage.get(k), int) for k in ("prompt_tokens", "completion_tokens")
    ):
        obj["usage"] = costed(usage)
    return obj


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    body: dict[str, object],
    up: Upstream,
    chat: bool,
    costed: Costed,
) -> web.StreamResponse:
    """The backend's answer to the call, as OpenRouter returns it."""
    url = str(up["backend"]).rstrip("/") + ("/chat/completions" if chat else "/completions")
    name = up["name"]
    try:
        async with session.post(url, json=_upstream_body(body, up)) as resp:
            if resp.status != 200:
                return _provider_error(502, f"HTTP {resp.status}: {await resp.text()}", name)
            if not body.get("stream"):
                obj = orjson.loads(await resp.read())
                out = _annotate(obj, name, costed) if isinstance(obj, dict) else obj
                return web.Response(body=orjson.dumps(out), content_type="application/json")
            return await _relay(request, resp, name, costed)
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as e:
        return _provider_error(502, f"{type(e).__name__}: {e}", name)


async def _relay(
    request: web.Request, resp: aiohttp.ClientResponse, name: str, costed: Costed
) -> web.StreamResponse:
    """The backend's stream event by event, each JSON event naming the upstream."""
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        try:
            obj = orjson.loads(data) if data != b"[DONE]" else None
        except orjson.JSONDecodeError:
            obj = None  # passed on as it came: the client sees what the upstream sent
        if isinstance(obj, dict):
            data = orjson.dumps(_annotate(obj, name, costed))
        await out.write(b"data: " + data + b"\n\n")
    await out.write_eof()
    return out
