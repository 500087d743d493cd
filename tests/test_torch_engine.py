"""The second engine of the local lineup: bakeoff's own OpenAI-compatible server over transformers
(PyTorch, CPU, float32), beside a llama.cpp server of the same F16 weights. Real server processes,
started the way a run starts them (`LocalProvider` from lineup endpoints); no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from bakeoff.endpoints import CallRequest, EndpointClient
from bakeoff.lineups import Lineup, LocalSpec
from bakeoff.providers import LocalProvider, StartContext
from conftest import wait_for

PROMPTS = [
    "Write one sentence about the sea.",
    "Name three colours.",
    "What is the capital of France?",
    "Describe a cat in a few words.",
    "Give me a tip for learning to cook.",
    "What does a bakery sell?",
    "Tell me a fact about the moon.",
    "Why do birds fly south?",
    "What is 12 plus 7?",
    "Say hello in French.",
]
N_TOKENS = 24
LLAMA_NEUTRAL = {"repeat_penalty": 1, "top_k": 0, "min_p": 0}
"""llama-cpp-python's server otherwise samples with 1.1 / 40 / 0.05 (greedy included: the
repetition penalty moves the argmax); the transformers server's own defaults are these."""

LINEUP: dict[str, Any] = {
    "endpoints": [
        {"name": "llama", "provider": "local", "model": "smol", "local": {"n_threads": 1}},
        {
            "name": "torch",
            "provider": "local",
            "model": "smol",
            "local": {"engine": "transformers", "n_threads": 1},
        },
        {
            "name": "torch-rep",
            "provider": "local",
            "model": "smol",
            "local": {
                "engine": "transformers",
                "n_threads": 1,
                "forced_repetition_penalty": 1.3,
            },
        },
    ]
}


@pytest.fixture(scope="module")
def urls(isolated_cache):
    """llama.cpp F16, transformers F16 and transformers F16 with a forced penalty, all up."""
    lineup = Lineup.model_validate(LINEUP)
    providers = {e.name: LocalProvider(e) for e in lineup.endpoints}
    ctx = StartContext(lineup, providers=dict(providers))

    async def start() -> dict[str, str]:
        got = await asyncio.gather(*(p.start(ctx) for p in providers.values()))
        return dict(zip(providers, got, strict=True))

    try:
        yield asyncio.run(start())
    finally:

        async def stop() -> None:
            await asyncio.gather(*(p.stop() for p in providers.values()))

        asyncio.run(stop())


def chat(prompt: str, n: int = N_TOKENS, **params: Any) -> CallRequest:
    return CallRequest(
        messages=[{"role": "user", "content": prompt}],
        params={"temperature": 0, "max_tokens": n, **params},
    )


async def _calls(url: str, reqs: list[CallRequest], stream: bool = True):
    async with aiohttp.ClientSession() as s:
        c = EndpointClient(s, base_url=url, model="smol")
        return [await c.call(r.model_copy(update={"stream": stream})) for r in reqs]


def calls(url: str, reqs: list[CallRequest], stream: bool = True):
    return asyncio.run(_calls(url, reqs, stream))


def stats(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(url.removesuffix("/v1") + "/stats") as r:
            return dict(await r.json())

    return asyncio.run(go())


def test_greedy_chat_streamed_and_not_with_usage(urls):
    url = urls["torch"]

    async def raw() -> tuple[Any, list[bytes], list[tuple[int, Any]]]:
        body = {
            "model": "smol",
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 8,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "an_unknown_field": {"is": "ignored"},
        }
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/models") as r:
                models = await r.json()
            async with s.post(url + "/chat/completions", json=body) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                events = [e for e in (await r.read()).split(b"\n\n") if e]
            bad = []
            for data in (b"{not json", json.dumps({"model": "smol"}).encode()):
                async with s.post(url + "/chat/completions", data=data) as r:
                    bad.append((r.status, await r.json()))
        return models, events, bad

    models, events, bad = asyncio.run(raw())
    assert models["data"][0]["id"] == "smol"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert events[-1] == b"data: [DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["object"] == "chat.completion.chunk"
    tokens = [c for c in chunks[1:-2] if c["choices"][0]["delta"].get("content")]
    assert len(tokens) == 8  # one chunk per token
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8
    for status, err in bad:
        assert status == 400 and err["error"]["type"] == "invalid_request_error"
        assert err["error"]["message"]

    streamed, whole = (calls(url, [chat("Name three colours.", 16)], s)[0] for s in (True, False))
    assert streamed.text == whole.text and streamed.text
    for res in (streamed, whole):
        assert res.usage_source == "usage" and res.completion_tokens == 16
        assert res.finish_reason == "length" and res.prompt_tokens and res.prompt_tokens > 20
    assert len(streamed.timings.token_chunk_ms) == 16
    # a stop string ends the answer before it, with finish_reason stop
    stop_at = whole.text.split()[2]
    cut = calls(url, [chat("Name three colours.", 16, stop=[stop_at])], stream=True)[0]
    assert cut.finish_reason == "stop" and cut.text == whole.text[: whole.text.index(stop_at)]


def test_greedy_agrees_with_llama_cpp_on_the_same_weights(urls):
    async def both():
        return await asyncio.gather(
            _calls(urls["torch"], [chat(p) for p in PROMPTS]),
            # llama-cpp-python's server sends no usage in streams
            _calls(urls["llama"], [chat(p, **LLAMA_NEUTRAL) for p in PROMPTS], stream=False),
        )

    torch_res, llama_res = asyncio.run(both())
    same = sum(a.text == b.text for a, b in zip(torch_res, llama_res, strict=True))
    print(f"\ngreedy agreement transformers vs llama.cpp F16: {same}/{len(PROMPTS)}")
    pairs = [(a.text, b.text) for a, b in zip(torch_res, llama_res, strict=True)]
    assert same >= len(PROMPTS) - 3, pairs
    assert [r.prompt_tokens for r in torch_res] == [r.prompt_tokens for r in llama_res]


def test_same_seed_same_sample_other_seeds_other_samples(urls):
    def sample(seed: int) -> str:
        req = chat("Write a short poem about bread.", 16, temperature=1, top_p=1, seed=seed)
        return calls(urls["torch"], [req])[0].text

    first = sample(7)
    assert sample(7) == first
    others = {sample(s) for s in (1, 2, 3)}
    assert len(others | {first}) >= 3, others


def test_concurrent_requests_are_batched_and_each_stops_on_its_own(urls):
    url = urls["torch"]
    before = stats(url)["batch_sizes"]
    prompts = ["Hi", "Name three colours.", "Count from one to ten, please, in words.", "Why?"]
    reqs = [chat(p, 6 + 3 * i) for i, p in enumerate(prompts)]

    async def together():
        async with aiohttp.ClientSession() as s:
            c = EndpointClient(s, base_url=url, model="smol")
            jobs = [c.call(r.model_copy(update={"stream": i % 2 == 0})) for i, r in enumerate(reqs)]
            return await asyncio.gather(*jobs)

    results = asyncio.run(together())
    after = stats(url)["batch_sizes"]
    grown = {int(k): v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    print(f"\nbatch sizes of the 4 concurrent requests: {grown}")
    assert max(grown) > 1, grown
    for req, res in zip(reqs, results, strict=True):
        assert res.text and res.finish_reason in ("length", "stop")
        assert res.prompt_tokens and res.completion_tokens
        if res.finish_reason == "length":
            assert res.completion_tokens == req.params["max_tokens"]


def test_forced_repetition_penalty_cannot_be_switched_off(urls):
    prompts = ["Count from 1 to 20.", "List the days of the week.", "Name three colours."]
    reqs = [chat(p, N_TOKENS, repetition_penalty=1, repeat_penalty=1) for p in prompts]

    async def both():
        return await asyncio.gather(_calls(urls["torch"], reqs), _calls(urls["torch-rep"], reqs))

    neutral, forced = ([r.text for r in res] for res in asyncio.run(both()))
    assert sum(a != b for a, b in zip(neutral, forced, strict=True)) >= 2, (neutral, forced)


def test_lineup_refuses_llama_cpp_settings_for_transformers_and_back():
    with pytest.raises(ValidationError, match=r"n_batch is llama\.cpp's"):
        LocalSpec(engine="transformers", n_batch=8)
    with pytest.raises(ValidationError, match="forced_repetition_penalty is a setting of engine"):
        LocalSpec(forced_repetition_penalty=1.3)
    assert LocalSpec(engine="transformers", max_batch=1).max_batch == 1


_CHILD = """
import time
from bakeoff.local import ServerSettings, launch, variant_path
srv = launch("orphan", variant_path("F16"), alias="smol",
             settings=ServerSettings(engine="transformers"))
print(srv.pid, flush=True)
time.sleep(600)
"""


def test_the_server_dies_with_its_parent(isolated_cache):
    """`kill -9` of the process that started it leaves no transformers server behind."""
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        assert b"bakeoff.local._torch_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        wait_for(lambda: not _alive(pid), timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False
