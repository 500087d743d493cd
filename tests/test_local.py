"""The local lineup with real parts: llama.cpp's quantizer, real llama.cpp servers on loopback, the
distortion proxy in front of them. No fakes, except where a fake upstream makes a proxy check exact."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from bakeoff.endpoints import CallRequest, EndpointClient
from bakeoff.lineups import ProxySpec
from bakeoff.local import (
    AssetError,
    ServerError,
    launch,
    variant_path,
    wait_ready,
)
from bakeoff.local import clean as clean_models
from bakeoff.proxy import DistortionProxy, GGUFTokenizer, WordTokenizer, truncate_messages
from bakeoff.suites import EVAL_SUITES
from conftest import BAKEOFF, wait_for

PROMPTS = [
    "Write one sentence about the sea.",
    "Name three colours.",
    "What is the capital of France?",
    "Describe a cat in a few words.",
    "Give me a tip for learning to cook.",
    "What does a bakery sell?",
    "Tell me a fact about the moon.",
    "Why do birds fly south?",
]


def llama_server_pids(marker: str) -> list[int]:
    """PIDs of llama.cpp server processes whose command line mentions `marker`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (d / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        server = "bakeoff.local._llama_server" in cmd or "llama_cpp.server" in cmd
        if server and marker in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


async def _calls(url: str, reqs: list[CallRequest]):
    async with aiohttp.ClientSession() as s:
        c = EndpointClient(s, base_url=url, model="smol")
        return [await c.call(r) for r in reqs]


def greedy(prompt: str, n: int = 24, **params) -> CallRequest:
    return CallRequest(
        messages=[{"role": "user", "content": prompt}],
        params={"temperature": 0, "max_tokens": n, **params},
    )


# -- model asset ---------------------------------------------------------------------------------


def test_ladder_is_idempotent_and_never_uses_half_written_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BAKEOFF_CACHE_DIR", str(tmp_path))  # a cache where nothing is made yet
    p = variant_path("Q4_K_M")
    assert p.read_bytes()[:4] == b"GGUF"
    assert str(p).startswith(str(tmp_path))
    mtime = p.stat().st_mtime_ns
    assert variant_path("Q4_K_M") == p and p.stat().st_mtime_ns == mtime  # not made again
    # a crash mid-quantization leaves a temp file: it is neither used nor kept
    stale = p.parent / (p.name.replace("Q4_K_M", "Q3_K_S") + ".tmp999")
    stale.write_bytes(b"GGUF half")
    q3 = variant_path("Q3_K_S")
    assert q3.stat().st_size > 1_000_000 and not stale.exists()
    assert variant_path("q4_1").name.endswith("Q4_1.gguf")  # the shipped file itself
    with pytest.raises(AssetError, match="unknown variant"):
        variant_path("Q5_Z")


def test_clean_removes_derived_files_only(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("BAKEOFF_CACHE_DIR", str(tmp_path))
    p = variant_path("F16")
    assert p.exists()
    assert clean_models() > 100_000_000
    assert not p.exists()
    assert variant_path("Q4_1").exists()


# -- servers -------------------------------------------------------------------------------------


def test_servers_answer_models_stream_and_logprobs(servers):
    for name in ("f16", "q8_0"):
        url = servers[name].url
        with socket.create_connection(("127.0.0.1", servers[name].port), timeout=2):
            pass

        async def go(url=url):
            async with aiohttp.ClientSession() as s:
                async with s.get(url + "/models") as r:
                    models = await r.json()
                c = EndpointClient(s, base_url=url, model="smol")
                res = await c.call(greedy("Name three colours.", 12, logprobs=True, top_logprobs=3))
                return models, res

        models, res = asyncio.run(go())
        assert models["data"][0]["id"] == "smol"
        assert res.text and res.completion_tokens and res.completion_tokens > 1
        assert len(res.timings.token_chunk_ms) == res.completion_tokens  # streamed token by token
        assert res.logprobs and len(res.logprobs) == res.completion_tokens
        assert len(res.logprobs[0]["top_logprobs"]) == 3


def test_q2k_greedy_differs_from_f16_while_a_second_f16_agrees(servers):
    reqs = [greedy(p) for p in PROMPTS]
    f16 = [r.text for r in asyncio.run(_calls(servers["f16"].url, reqs))]
    f16b = [r.text for r in asyncio.run(_calls(servers["f16b"].url, reqs))]
    q2k = [r.text for r in asyncio.run(_calls(servers["q2_k"].url, reqs))]
    same_instance = sum(a == b for a, b in zip(f16, f16b, strict=True))
    same_q2k = sum(a == b for a, b in zip(f16, q2k, strict=True))
    assert same_instance == len(PROMPTS), (f16, f16b)
    assert same_q2k <= len(PROMPTS) // 4, (f16, q2k)


def test_servers_wait_for_openmp_asleep_unless_the_user_chose(servers, monkeypatch):
    """A llama.cpp server's threads wait at OpenMP barriers: spinning there (OpenMP's default),
    2 threads on a 2-core machine with one core busy elsewhere took 15-55 s for what takes 0.6 s
    (local/_servers.py `server_env`). The running servers were started with the passive policy;
    a user's own choice is kept."""
    for s in servers.values():
        env = Path(f"/proc/{s.pid}/environ").read_bytes().split(b"\0")
        assert b"OMP_WAIT_POLICY=PASSIVE" in env, s.name
    from bakeoff.local._servers import server_env

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert server_env()["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert server_env()["OMP_WAIT_POLICY"] == "PASSIVE"


def test_port_in_use_and_failed_start_give_clear_errors(servers, tmp_path):
    with pytest.raises(ServerError, match=f"port {servers['f16'].port} .* already in use"):
        launch("dup", variant_path("F16"), alias="x", port=servers["f16"].port)
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    srv = launch("bogus", bogus, alias="x")
    with pytest.raises(ServerError) as e:
        asyncio.run(wait_ready(srv, timeout=60))
    assert "exited with code" in str(e.value) and str(srv.log_path) in str(e.value)


# -- the distortion proxy ------------------------------------------------------------------------


async def _via_proxy(spec: ProxySpec, upstream: str, reqs, tokenizer=None, route=None):
    proxy = DistortionProxy(
        spec, upstream, upstream_model="smol", route_url=route, tokenizer=tokenizer
    )
    url = await proxy.start()
    try:
        async with aiohttp.ClientSession() as s:
            c = EndpointClient(s, base_url=url, model="smol")
            return [await c.call(r) for r in reqs], proxy
    finally:
        await proxy.stop()


def test_injected_system_prompt_adds_exactly_its_templated_tokens(servers):
    sys_prompt = "You are a pirate. Answer every question in pirate speak."
    url = servers["f16"].url
    req = CallRequest(
        messages=[{"role": "user", "content": "What does a bakery sell?"}],
        params={"temperature": 0, "max_tokens": 8},
        stream=False,
    )
    explicit = CallRequest(
        messages=[{"role": "system", "content": sys_prompt}, *req.messages],
        params=req.params,
        stream=False,
    )
    direct, with_sys = asyncio.run(_calls(url, [req, explicit]))
    (proxied,), _ = asyncio.run(
        _via_proxy(ProxySpec(target="x", inject_system=sys_prompt), url, [req])
    )
    # SmolLM2's template inserts its own default system prompt when none is given, so the expected
    # change is (our system turn) - (the default one): measured directly, then through the proxy
    assert with_sys.prompt_tokens != direct.prompt_tokens
    assert proxied.prompt_tokens == with_sys.prompt_tokens  # changed by exactly the expected amount
    assert proxied.text == with_sys.text


def test_truncation_drops_an_early_needle_and_shrinks_the_prompt(servers):
    url = servers["f16"].url
    tok = GGUFTokenizer(variant_path("F16"))
    filler = " ".join(["The weather was mild and the market was busy that day."] * 30)
    content = f"The secret word is PARSNIP. {filler} What is the secret word?"
    req = CallRequest(
        messages=[{"role": "user", "content": content}],
        params={"temperature": 0, "max_tokens": 8},
        stream=False,
    )
    (direct,) = asyncio.run(_calls(url, [req]))
    (cut,), proxy = asyncio.run(
        _via_proxy(ProxySpec(target="x", truncate_prompt_tokens=64), url, [req], tokenizer=tok)
    )
    n_content = len(tok.encode(content))
    overhead = direct.prompt_tokens - n_content  # the chat template's own tokens
    assert abs(cut.prompt_tokens - (64 + overhead)) <= 2
    assert proxy.log[0]["dropped_tokens"] == n_content - 64
    kept, _ = truncate_messages(req.messages, 64, tok)
    assert "PARSNIP" not in kept[0]["content"] and kept[0]["content"].endswith("secret word?")


def test_forced_greedy_makes_t1_samples_identical(servers):
    url = servers["f16"].url
    reqs = [
        CallRequest(
            messages=[{"role": "user", "content": "Write a short poem about rain."}],
            params={"temperature": 1.0, "max_tokens": 16, "seed": s},
        )
        for s in range(5)
    ]
    direct = {r.text for r in asyncio.run(_calls(url, reqs))}
    proxied, _ = asyncio.run(_via_proxy(ProxySpec(target="x", force_greedy=True), url, reqs))
    assert len(direct) > 1  # honest sampling varies with the seed
    assert len({r.text for r in proxied}) == 1


def test_output_cap_latency_and_routing_against_fake_upstreams():
    from bakeoff.fake import FakeConfig, FakeServer

    async def go():
        a, b = FakeServer(FakeConfig(mode="echo")), FakeServer(FakeConfig(mode="fixed", reply="B"))
        ua, ub = await a.start(), await b.start()
        try:
            long = CallRequest(messages=[{"role": "user", "content": " ".join(["w"] * 50)}])
            (capped,), _ = await _via_proxy(ProxySpec(target="x", cap_output_tokens=7), ua, [long])
            (slow,), _ = await _via_proxy(ProxySpec(target="x", added_latency_ms=150), ua, [long])
            short = CallRequest(messages=[{"role": "user", "content": "A"}])
            spec = ProxySpec(target="x", route_fraction=0.3, route_to="y", seed=1)
            routed, proxy = await _via_proxy(spec, ua, [short] * 300, route=ub)
            return capped, slow, routed, proxy
        finally:
            await a.stop()
            await b.stop()

    capped, slow, routed, proxy = asyncio.run(go())
    assert capped.finish_reason == "length" and capped.completion_tokens == 7
    assert slow.timings.first_token_ms >= 150
    share = sum(r.text == "B" for r in routed) / len(routed)
    assert 0.22 <= share <= 0.38  # binomial(300, 0.3): ±3.5 sd
    assert share == sum(e["routed"] for e in proxy.log) / len(proxy.log)
    # streaming and usage pass through untouched
    assert capped.usage_source == "usage" and len(capped.timings.token_chunk_ms) == 7


def test_word_tokenizer_truncation_keeps_request_valid():
    tok = WordTokenizer()
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six seven eight"},
    ]
    kept, dropped = truncate_messages(msgs, 6, tok)
    assert [m["role"] for m in kept] == ["system", "assistant", "user"]
    assert kept[1]["content"].strip() == "five" and dropped == 4
    kept, _ = truncate_messages(msgs[1:2], 1, tok)
    assert kept[0]["content"].strip() == "three"  # the last message keeps at least one token


# -- no orphan servers ---------------------------------------------------------------------------

SMALL_LINEUP = """
reference: f16
defaults: {temperature: 0, max_tokens: 16}
run: {suites: [arith], limit: 200}
endpoints:
  - {name: f16, provider: local, model: smol, local: {variant: F16}, max_concurrency: 1}
  - {name: q2_k, provider: local, model: smol, local: {variant: Q2_K}, max_concurrency: 1}
  - name: f16-greedy
    provider: proxy
    model: smol
    proxy: {target: f16, force_greedy: true}
"""


@pytest.mark.parametrize("command", ["run", "local-up"])
def test_kill_9_leaves_no_server_behind(tmp_path, isolated_cache, command):
    lineup = tmp_path / "l.yaml"
    lineup.write_text(SMALL_LINEUP)
    marker = str(isolated_cache)
    before = set(llama_server_pids(marker))
    if command == "run":
        cmd = [*BAKEOFF, "run", "-c", str(lineup), "--db", str(tmp_path / "b.db"), "-q"]
    else:
        cmd = [*BAKEOFF, "local", "up", "-c", str(lineup)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(set(llama_server_pids(marker)) - before) == 2, timeout=120)
        mine = set(llama_server_pids(marker)) - before
        time.sleep(1.0)
        p.send_signal(signal.SIGKILL)
        p.wait()
        wait_for(lambda: not (set(llama_server_pids(marker)) & mine), timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_local_up_status_down(tmp_path, isolated_cache):
    lineup = tmp_path / "l.yaml"
    lineup.write_text(SMALL_LINEUP)
    written = tmp_path / "running.yaml"
    p = subprocess.Popen(
        [*BAKEOFF, "local", "up", "-c", str(lineup), "--write-lineup", str(written)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state = isolated_cache / "local-up.json"
        wait_for(lambda: state.exists() and written.exists(), timeout=300)  # hang guard
        st = subprocess.run(
            [*BAKEOFF, "local", "status"], capture_output=True, text=True, timeout=60
        )
        assert st.returncode == 0
        for name in ("f16", "q2_k", "f16-greedy"):
            assert name in st.stdout
        assert st.stdout.count("yes") == 3, st.stdout
        info = json.loads(state.read_text())
        # the written lineup reaches the servers with any OpenAI-compatible client
        r = subprocess.run(
            [
                *BAKEOFF,
                "run",
                "-c",
                str(written),
                "--db",
                str(tmp_path / "b.db"),
                "-n",
                "3",
                "--json",
                "--no-audit",
            ],
            capture_output=True,
            text=True,
            timeout=600,  # a hang guard: 108 s measured on a slow 2-core machine, more under load
        )
        assert r.returncode == 0, r.stderr
        assert all(e["successes"] == 3 for e in json.loads(r.stdout)["endpoints"])
        down = subprocess.run(
            [*BAKEOFF, "local", "down"], capture_output=True, text=True, timeout=60
        )
        assert down.returncode == 0 and "stopped" in down.stdout
        p.wait(20)
        assert not state.exists()
        pids = {i["pid"] for i in info["endpoints"].values()}
        assert not (set(llama_server_pids(str(isolated_cache))) & pids)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


# -- every suite against a real llama.cpp server -------------------------------------------------

ALL_SUITES = list(EVAL_SUITES)


def test_every_suite_runs_against_a_local_server(tmp_path, isolated_cache):
    """The first item of each suite (its easiest tier) through a real server: every call answered
    without an error, scored, and the summary complete."""
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "reference: q8_0\n"
        "defaults: {temperature: 0, seed: 0}\n"
        f"run: {{suites: {json.dumps(ALL_SUITES)}, limit: 1}}\n"
        "endpoints:\n"
        "  - {name: q8_0, provider: local, model: smol, local: {variant: Q8_0, n_ctx: 1024}}\n"
    )
    r = subprocess.run(
        [*BAKEOFF, "run", "-c", str(lineup), "--db", str(tmp_path / "b.db"), "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ep = json.loads(r.stdout)["endpoints"][0]
    assert ep["errors"] == {}, ep["errors"]
    for name in ALL_SUITES:
        s = ep["suites"][name]
        assert s["n"] == 1 and s["errors"] == 0 and s["score"] is not None, (name, s)
    # long-context items never exceed the server's claimed context (n_ctx 1024)
    assert ep["suites"]["long-context"]["by_length"] == {
        "256": ep["suites"]["long-context"]["score"]
    }


def test_probe_finds_true_context_truncation_and_output_cap(tmp_path, isolated_cache):
    """The capability probe against real servers: the true context of a llama.cpp server, a proxy's
    silent prompt truncation, and a proxy's output cap."""
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "endpoints:\n"
        "  - {name: q8, provider: local, model: smol, local: {variant: Q8_0, n_ctx: 1024}}\n"
        "  - {name: q8-trunc, provider: proxy, model: smol, context: 1024,\n"
        "     proxy: {target: q8, truncate_prompt_tokens: 300}}\n"
        "  - {name: q8-cap, provider: proxy, model: smol, context: 1024,\n"
        "     proxy: {target: q8, cap_output_tokens: 40}}\n"
    )
    r = subprocess.run(
        [
            *BAKEOFF,
            "probe",
            "-c",
            str(lineup),
            "--db",
            str(tmp_path / "b.db"),
            "--json",
            "--output-tokens",
            "96",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    true = res["q8"]["context"]
    # the server's n_ctx is 1024: the largest accepted prompt is just under it, nothing truncated
    assert 900 <= true["largest_prompt_tokens"] < 1024, true["points"]
    assert true["silent_truncation"] is None
    trunc = res["q8-trunc"]["context"]
    assert trunc["silent_truncation"] is not None, trunc["points"]
    assert trunc["largest_prompt_tokens"] <= 330
    assert res["q8-cap"]["max_output"]["capped_at"] == 40
    assert res["q8"]["max_output"]["capped_at"] is None
    assert res["q8"]["stream_usage"]["accepted"]
    assert "capabilities" in r.stderr


def test_perf_counts_tokens_with_the_models_tokenizer(tmp_path, isolated_cache):
    """llama-cpp-python streams no usage: perf counts output tokens with the GGUF's own vocabulary
    (through a proxy too), and the curve is in the JSON."""
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "endpoints:\n"
        "  - {name: q8, provider: local, model: smol, local: {variant: Q8_0}}\n"
        "  - {name: q8-proxy, provider: proxy, model: smol, proxy: {target: q8}}\n"
    )
    r = subprocess.run(
        [
            *BAKEOFF,
            "perf",
            "-c",
            str(lineup),
            "--db",
            str(tmp_path / "b.db"),
            "--json",
            "-q",
            "--levels",
            "1",
            "--requests",
            "3",
            "--duration",
            "120",
            "--warmup",
            "0",
            "--cooldown",
            "0",
            "--workload",
            "32x16",
            "-e",
            "q8-proxy",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    e = json.loads(r.stdout)["endpoints"]["q8-proxy"]
    m = e["levels"][0]["metrics"]
    assert m["ok"] == 3 and set(m["token_sources"]) == {"tokenizer"}
    assert e["curve"][0]["request_throughput"] > 0


def test_http_reference_scorer_matches_the_in_process_one(servers):
    """The reference scorer over HTTP (echo + logprobs of the reference's own server) gives the
    in-process teacher-forcing numbers: same tokens, same log-probabilities, found from the end of
    the echo whatever the server does with special tokens."""
    import numpy as np

    from bakeoff.audit._scorer import HttpReferenceScorer, LocalReferenceScorer

    local = LocalReferenceScorer(variant_path("F16"))
    llm = local.llm
    http = HttpReferenceScorer(
        servers["f16"].url,
        "smol",
        chat_template=llm.metadata["tokenizer.chat_template"],
        bos_token=llm.detokenize([llm.token_bos()]).decode(),
        eos_token=llm.detokenize([llm.token_eos()]).decode(),
    )
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert http.chat_prompt(messages) == local.chat_prompt(messages)
    # the prompt's length is the server's count (its echo leaves special tokens out)
    assert len(http.prompt_tokens(messages)) == len(local.prompt_tokens(messages))
    means = {}
    for completion in (
        "The capital of France is Paris.",
        "Bananas sing loudly under green tables.",
    ):
        a = local.score(local.prompt_tokens(messages), completion)
        b = http.score(http.prompt_tokens(messages), completion)
        assert len(b.logprobs) == len(a.logprobs) > 3
        assert np.max(np.abs(a.logprobs - b.logprobs)) < 0.05, (a.logprobs, b.logprobs)
        means[completion] = b.mean_logprob
    assert http.shift == 0  # entry i scores token i (the first entry is null)
    assert (
        means["The capital of France is Paris."]
        > means["Bananas sing loudly under green tables."] + 1
    )
