"""The fake's `openrouter` persona routing calls to real backends, one per upstream
(`fake/_openrouter.py`): here two other fake servers answering differently, so which one served a
call is seen in its answer and in the backend's own log."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.local import free_port


def test_a_pinned_call_is_forwarded_to_its_upstreams_backend_and_named():
    async def go():
        a = FakeServer(FakeConfig(mode="fixed", reply="answered by a", model="smol"))
        b = FakeServer(FakeConfig(mode="fixed", reply="answered by b", model="smol"))
        urls = [await a.start(), await b.start()]
        dead = f"http://127.0.0.1:{free_port()}/v1"
        ups = [
            {"name": "A", "tag": "a/bf16", "backend": urls[0], "backend_model": "smol"},
            {"name": "B", "tag": "b", "backend": urls[1]},
            {"name": "Gone", "tag": "gone", "backend": dead},
        ]
        front = FakeServer(FakeConfig(persona="openrouter", model="acme/m", upstreams=ups))
        url = await front.start()
        out = {}
        base = {"model": "acme/m", "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with aiohttp.ClientSession() as s:

                async def post(routing, **extra):
                    body = {**base, "provider": routing, **extra}
                    async with s.post(url + "/chat/completions", json=body) as r:
                        return r.status, await r.read()

                out["b"] = await post(
                    {"only": ["b"]},
                    logprobs=True,
                    top_logprobs=5,
                    repetition_penalty=1.0,
                    usage={"include": True},
                )
                out["a"] = await post({"order": ["a/bf16"]}, stream=True)
                out["unknown"] = await post({"only": ["nobody"]})
                out["gone"] = await post({"only": ["gone"]})
        finally:
            for srv in (front, a, b):
                await srv.stop()
        return out, a.log, b.log

    out, a_log, b_log = asyncio.run(go())
    status, raw = out["b"]
    body = orjson.loads(raw)
    assert status == 200 and body["provider"] == "B"
    assert body["choices"][0]["message"]["content"] == "answered by b"
    assert body["usage"]["cost"] > 0  # OpenRouter's own figure, on the backend's usage
    # forwarded as OpenRouter forwards: its own fields dropped, the sampler's passed on
    (seen,) = b_log
    assert "provider" not in seen["body_keys"] and "usage" not in seen["body_keys"]
    assert {"logprobs", "top_logprobs", "repeat_penalty", "repetition_penalty"} <= set(
        seen["body_keys"]
    )
    status, raw = out["a"]
    events = [
        orjson.loads(line[6:])
        for line in raw.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    assert status == 200 and raw.rstrip().endswith(b"data: [DONE]")
    assert events and all(e["provider"] == "A" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "answered by a" and len(a_log) == 1
    status, raw = out["unknown"]
    assert status == 404 and orjson.loads(raw)["error"]["code"] == 404
    status, raw = out["gone"]
    err = orjson.loads(raw)["error"]
    assert status == 502 and err["metadata"]["provider_name"] == "Gone"
