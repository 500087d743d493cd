"""Provider presets against the fake server answering as each provider does; OpenRouter upstream
discovery; a bill that adds up."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import aiohttp
import pytest
import yaml

import bakeoff
from bakeoff.endpoints import CallError, CallRequest, ClientOptions, EndpointClient, ErrorClass
from bakeoff.fake import PERSONAS, FakeConfig, FakeServer
from bakeoff.lineups import LineupError, load_lineup, parse_lineup
from bakeoff.plugins import get_provider, hookimpl, plugin_manager, resolve_lineup
from bakeoff.providers import Provider

PRESETS = [
    "openrouter",
    "together",
    "fireworks",
    "groq",
    "deepinfra",
    "openai",
    "vllm",
    "sglang",
    "llamacpp",
    "ollama",
    "lmstudio",
]


def _one(provider: str, extra: str = "") -> bakeoff.Lineup:
    text = f"endpoints:\n  - {{name: a, provider: {provider}{extra}}}\n"
    return parse_lineup(text, resolve=resolve_lineup)


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_fills_base_url_key_and_audit_sampler(name):
    cls = get_provider(name)
    ep = _one(name).endpoints[0]
    assert ep.base_url == cls.default_base_url and ep.base_url.startswith("http")
    assert ep.api_key_env == cls.default_key_env
    # the audit's neutral fields come from the engine, or from the preset
    assert ep.engine == cls.engine
    if cls.engine is None:
        assert ep.neutral_params == cls.neutral_params
    # a base_url of the user's own: no key variable is assumed
    own = _one(name, ', base_url: "http://10.0.0.9:9000/v1"').endpoints[0]
    assert own.base_url == "http://10.0.0.9:9000/v1" and own.api_key_env is None


def test_every_preset_is_tested_here_and_has_a_persona():
    hosted = {
        n for n, c in bakeoff.plugins.providers().items() if not getattr(c, "starts_server", 0)
    }
    assert hosted == set(PRESETS) == set(PERSONAS)


def test_an_unknown_provider_and_a_missing_base_url_name_file_line_and_field(tmp_path):
    bad = tmp_path / "l.yaml"
    bad.write_text("endpoints:\n  - name: a\n    provider: togethr\n")
    with pytest.raises(LineupError) as e:
        load_lineup(bad, resolve=resolve_lineup)
    assert f"{bad}:3: endpoints[0].provider: unknown provider 'togethr'" in str(e.value)

    class NoDefault(Provider):  # a plugin's provider without a default base URL
        name = "nodefault"
        default_base_url = None

    class Plugin:
        @hookimpl
        def register_providers(self, register):
            register(NoDefault)

    pm = plugin_manager()
    pm.register(Plugin(), name="test-nodefault")
    try:
        bad.write_text("endpoints:\n  - name: a\n    provider: nodefault\n")
        with pytest.raises(LineupError) as e:
            load_lineup(bad, resolve=resolve_lineup)
        assert f"{bad}:2: endpoints[0].base_url: base_url is required for provider nodefault" in (
            str(e.value)
        )
    finally:
        pm.unregister(name="test-nodefault")


EXPECTED_ERRORS = {
    "context": ErrorClass.context_overflow,
    "auth": ErrorClass.auth,
    "rate_limit": ErrorClass.rate_limited,
    "server_error": ErrorClass.server_error,
}


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_request_body_and_error_mapping_against_its_persona(name, tmp_path):
    """A run through the preset (suites, capability probes) sends nothing the provider refuses
    and reads its usage wherever it puts it; each documented error body is classified."""
    cls = get_provider(name)

    async def go():
        server = FakeServer(FakeConfig(persona=name, model="m", upstreams=[]))
        url = await server.start()
        try:
            lineup = parse_lineup(
                "run: {suites: [arith], limit: 3, probe: true, probe_max_context: 256}\n"
                f'endpoints:\n  - {{name: ep, provider: {name}, base_url: "{url}", model: m}}\n',
                resolve=resolve_lineup,
            )
            summary = await bakeoff.arun(lineup, db=tmp_path / "b.db", report=False)
            async with aiohttp.ClientSession() as session:
                client = EndpointClient(
                    session,
                    base_url=url,
                    model="m",
                    options=ClientOptions(drop_fields=cls.drops, upstream_field=cls.upstream_field),
                )
                errors = {}
                for fault in EXPECTED_ERRORS:
                    req = CallRequest(messages=[{"role": "user", "content": f"[[fault:{fault}]]"}])
                    try:
                        await client.call(req)
                        errors[fault] = None
                    except CallError as e:
                        errors[fault] = e.error_class
            return summary, server.log, errors
        finally:
            await server.stop()

    summary, log, errors = asyncio.run(go())
    e = summary.endpoint("ep")
    assert e.successes == e.calls == 3 and e.errors == {}
    assert e.usage_sources == {"usage": 3}, "usage read where this provider puts it"
    sent = [set(r["body_keys"]) for r in log]
    assert len(sent) > 3  # the probes' calls too
    refused = set(PERSONAS[name].refuses) | set(cls.drops)
    assert not any(keys & refused for keys in sent), "a refused field was sent"
    assert e.capabilities is not None
    if name == "groq":
        # removed, so the probe does not ask: a reply to a body without them says nothing
        assert e.capabilities["logprobs"] == "not tested: the preset strips it"
    for fault, want in EXPECTED_ERRORS.items():
        if fault == "context" and PERSONAS[name].silent_truncation:
            assert errors[fault] is None  # Ollama cuts the prompt: the probe is what sees it
        else:
            assert errors[fault] == want, (fault, errors[fault])


def test_without_its_drops_groq_refuses_logprobs_with_a_400():
    """What the preset's `drops` prevent: Groq answers `logprobs` with a 400."""

    async def go():
        server = FakeServer(FakeConfig(persona="groq"))
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = EndpointClient(session, base_url=url, model="m")
                req = CallRequest(
                    messages=[{"role": "user", "content": "hi"}], params={"logprobs": True}
                )
                with pytest.raises(CallError) as e:
                    await client.call(req)
                return e.value
        finally:
            await server.stop()

    err = asyncio.run(go())
    assert err.error_class == ErrorClass.bad_request and "logprobs" in (err.body or "")


UPSTREAMS = [
    {"name": "Alpha", "tag": "alpha/bf16", "quantization": "bf16", "context_length": 2048,
     "max_completion_tokens": 512, "prompt_per_m": 0.5, "completion_per_m": 1.5},
    # a reply name that is not its routing slug (OpenRouter: `novita/fp8` answers as NovitaAI)
    {"name": "NovitaAI", "tag": "novita/fp8", "quantization": "fp8", "context_length": 4096,
     "max_completion_tokens": 1024, "prompt_per_m": 0.2, "completion_per_m": 0.6},
    {"name": "Gamma Cloud", "tag": "gamma-cloud", "quantization": "int4", "context_length": 1024,
     "prompt_per_m": 0.1, "completion_per_m": 0.3, "cache_read_per_m": 0.01},
    {"name": "Delta", "tag": "delta", "quantization": None, "context_length": 2048,
     "prompt_per_m": 0.3, "completion_per_m": 0.9},
]  # fmt: skip


def test_an_openrouter_lineup_from_the_listing_runs_pinned_and_its_bill_adds_up(tmp_path):
    """`bakeoff lineup openrouter` on the fake's recorded-shape listing: 4 pinned upstreams; the
    run records who served each call, flags those another upstream served, and prices every
    call (suite, audit, probe) from `usage.cost` — the summary's total is the sum of the stored
    costs, and what the fake billed."""
    out = tmp_path / "lineup.yaml"

    async def go():
        server = FakeServer(
            FakeConfig(
                persona="openrouter",
                model="acme/smol",
                upstreams=UPSTREAMS,
                faults={"wrong_upstream": 0.15},
                seed=3,
            )
        )
        url = await server.start()
        env = {"OR_TEST_KEY": "sk-or-test-0123456789"}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bakeoff", "lineup", "openrouter", "acme/smol",
                "--base-url", url, "--key-env", "OR_TEST_KEY", "--suites", "arith", "-o", str(out),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**__import__("os").environ, **env},
            )  # fmt: skip
            _, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
            doc = yaml.safe_load(out.read_text())
            doc["run"].update({"limit": 6, "repeats": 1, "probe": True, "probe_max_context": 256})
            doc["audit"] = {"budget": 10, "batch": 10}
            out.write_text(yaml.safe_dump(doc))
            __import__("os").environ.update(env)
            summary = await bakeoff.arun(out, db=tmp_path / "or.db", report=False)
            return doc, summary, server
        finally:
            await server.stop()

    try:
        doc, summary, server = asyncio.run(go())
    finally:
        __import__("os").environ.pop("OR_TEST_KEY", None)
    eps = doc["endpoints"]
    assert [e["name"] for e in eps] == ["alpha-bf16", "novita-fp8", "gamma-cloud", "delta"]
    assert doc["reference"] == "alpha-bf16"  # the one listed at full precision
    for e, u in zip(eps, UPSTREAMS, strict=True):
        assert e["routing"] == {"only": [u["tag"]], "order": [u["tag"]], "allow_fallbacks": False}
        assert e["context"] == u["context_length"]
        assert e["price"]["input_per_m"] == pytest.approx(u["prompt_per_m"])
    assert eps[1]["claims"] == {
        "upstream_name": "NovitaAI",
        "quantization": "fp8",
        "max_output_tokens": 1024,
    }
    assert eps[2]["price"]["cached_input_per_m"] == pytest.approx(0.01)

    db = sqlite3.connect(tmp_path / "or.db")
    calls = db.execute(
        "SELECT endpoint, upstream, cost_usd, cost_source, status FROM calls"
    ).fetchall()
    side = db.execute("SELECT endpoint, upstream, cost_usd, purpose FROM side_calls").fetchall()
    assert {p for *_, p in side} == {"probe", "preflight"}  # the one-token preflight calls too
    suites = {s for (s,) in db.execute("SELECT DISTINCT suite FROM calls")}
    assert "arith" in suites and any(s.startswith("fidelity.") for s in suites)
    assert all(st == "ok" and up for _, up, _, _, st in calls), "every call names its upstream"
    assert {src for *_, src, _ in calls} <= {"usage", "cached"}
    # the bill: the summary's total is the sum of what is stored, and what the fake charged
    stored = sum(c for _, _, c, _, _ in calls) + sum(c for _, _, c, _ in side)
    assert summary.cost_usd == pytest.approx(stored, abs=1e-5)
    assert stored == pytest.approx(sum(server.ledger.costs), rel=1e-9)
    assert all(e.bill.sources.get("usage") for e in summary.endpoints)
    assert {"suite", "audit", "probe"} <= set().union(
        *(e.bill.by_purpose for e in summary.endpoints)
    )
    # the calls another upstream served: as many as the fake routed elsewhere, each flagged
    # who should have served each endpoint's calls: the fake's own name for the pinned tag
    expected = {e["name"]: u["name"] for e, u in zip(eps, UPSTREAMS, strict=True)}
    pinned_side = [r for r in side if r[3] != "preflight"]  # the one-token call is not pinned
    wrong_stored = sum(1 for ep, up, *_ in [*calls, *pinned_side] if up != expected[ep])
    wrong_served = sum(1 for r in server.log if r["fault"] == "wrong_upstream")
    assert wrong_served > 0 and wrong_stored == wrong_served
    assert sum(e.wrong_upstream or 0 for e in summary.endpoints) == wrong_served
    assert any("served by another upstream" in w for w in summary.warnings)


def test_a_gateway_listing_seeds_a_lineup(tmp_path):
    async def go():
        server = FakeServer(FakeConfig(model="org/model-a"))
        url = await server.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bakeoff", "lineup", "models", url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await proc.communicate()
            return url, proc.returncode, stdout.decode(), stderr.decode()
        finally:
            await server.stop()

    url, rc, stdout, stderr = asyncio.run(go())
    assert rc == 0, stderr
    lineup = parse_lineup(stdout, resolve=resolve_lineup)
    assert [(e.name, e.model, e.base_url) for e in lineup.endpoints] == [
        ("model-a", "org/model-a", url)
    ]


def test_usage_cost_and_cached_tokens_are_read_and_insane_values_refused():
    from bakeoff.endpoints import CallResult
    from bakeoff.endpoints._shapes import _apply_usage

    r = CallResult()
    _apply_usage(
        r,
        {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.25,
         "prompt_tokens_details": {"cached_tokens": 8}},
        None,
    )  # fmt: skip
    assert (r.cost_usd, r.cached_prompt_tokens, r.usage_source) == (0.25, 8, "usage")
    for bad in (float("nan"), -1, 1e12, "0.1", True):
        r = CallResult()
        _apply_usage(r, {"completion_tokens": 1, "cost": bad}, None)
        assert r.cost_usd is None, bad


def test_price_call_uses_the_reported_cost_else_tokens_at_price_with_the_cache_discount():
    from bakeoff.endpoints import CallResult
    from bakeoff.runs._cost import price_call

    ep = parse_lineup(
        "endpoints:\n  - {name: a, base_url: 'http://x/v1',"
        " price: {input_per_m: 2, output_per_m: 10, cached_input_per_m: 0.5}}\n"
    ).endpoints[0]
    r = CallResult(prompt_tokens=1000, cached_prompt_tokens=600, completion_tokens=100,
                   usage_source="usage")  # fmt: skip
    cost, src = price_call(ep, r)
    assert src == "price" and cost == pytest.approx((400 * 2 + 600 * 0.5 + 100 * 10) / 1e6)
    r.cost_usd = 0.123
    assert price_call(ep, r) == (0.123, "usage")
    assert price_call(ep, r, cached=True) == (0.0, "cached")
    assert price_call(ep.model_copy(update={"price": None}), CallResult(usage_source="usage")) == (
        None,
        None,
    )


def test_every_lineup_in_the_readme_loads():
    """The README's lineups are lineups: each YAML block with `endpoints:` validates."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "endpoints:" in b]
    assert len(blocks) >= 2
    for b in blocks:
        parse_lineup(b, "README.md", resolve=resolve_lineup)


def test_a_hosted_preset_without_a_price_is_priced_from_genai_prices_list():
    """No `price`, no `usage.cost`: the listed price of the provider's model (source `list`),
    the cached prompt tokens at the listed cache rate; off with `run.list_prices: false`."""
    import genai_prices

    from bakeoff.endpoints import CallResult
    from bakeoff.runs._cost import price_call

    ep = _one("openai", ", model: gpt-4o-mini").endpoints[0]
    r = CallResult(prompt_tokens=1000, cached_prompt_tokens=500, completion_tokens=50,
                   usage_source="usage")  # fmt: skip
    cost, src = price_call(ep, r, list_prices=True)
    want = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, cache_read_tokens=500, output_tokens=50),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    full = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=50), "gpt-4o-mini", provider_id="openai"
    ).total_price
    assert src == "list" and cost == pytest.approx(float(want)) and want < full
    assert price_call(ep, r, list_prices=False) == (None, None)
    unknown = ep.model_copy(update={"model": "no-such-model-xyz"})
    assert price_call(unknown, r, list_prices=True) == (None, None)
    vllm = _one("vllm", ", model: gpt-4o-mini").endpoints[0]  # self-hosted: no list price
    assert price_call(vllm, r, list_prices=True) == (None, None)


def test_pinning_and_wrong_upstream_rules():
    from bakeoff.runs._cost import pinned_upstream, served_elsewhere

    def ep(routing, claims=None):
        extra = f", routing: {routing}" + (f", claims: {claims}" if claims else "")
        return _one("openrouter", extra).endpoints[0]

    assert pinned_upstream(ep("{only: [novita/fp8]}")) == "novita/fp8"
    assert pinned_upstream(ep("{order: [novita], allow_fallbacks: false}")) == "novita"
    # two in order: either may serve, nothing is pinned
    assert pinned_upstream(ep("{order: [deepinfra, together], allow_fallbacks: false}")) is None
    assert pinned_upstream(ep("{order: [novita]}")) is None  # fallbacks allowed
    assert pinned_upstream(ep("{only: [novita]}", "{upstream_name: NovitaAI}")) == "NovitaAI"
    assert not served_elsewhere("novita/fp8", "NovitaAI")
    assert not served_elsewhere("nebius", "Nebius AI Studio")
    assert not served_elsewhere("google-vertex/global", "Google Vertex (Global)")
    assert not served_elsewhere("NovitaAI", "NovitaAI")
    assert served_elsewhere("novita/fp8", "Together")
    assert served_elsewhere("NovitaAI", "Novita")  # a known reply name is compared whole
    assert not served_elsewhere(None, "Together") and not served_elsewhere("novita", None)


def test_partial_counts_are_not_billed_and_list_prices_skip_own_servers():
    from bakeoff.endpoints import CallResult
    from bakeoff.runs._cost import price_call

    priced = parse_lineup(
        "endpoints:\n  - {name: a, base_url: 'http://x/v1', price: {input_per_m: 1, output_per_m: 1}}\n"
    ).endpoints[0]
    chunks = CallResult(completion_tokens=40, usage_source="chunks")
    assert price_call(priced, chunks) == (None, None)  # no prompt count: no bill
    own = _one("openai", ', base_url: "http://10.0.0.5:8000/v1", model: gpt-4o-mini').endpoints[0]
    r = CallResult(prompt_tokens=10, completion_tokens=5, usage_source="usage")
    assert price_call(own, r, list_prices=True) == (None, None)


def _listing_server(payload: bytes):
    from aiohttp import web

    async def handler(request):
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/models", handler)
    app.router.add_get("/v1/models/{a}/{b}/endpoints", handler)
    return app


async def _serve(payload: bytes):
    from aiohttp import web

    runner = web.AppRunner(_listing_server(payload))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1"


def test_discovery_reads_a_large_listing_and_refuses_a_hostile_one_clearly():
    import json

    from bakeoff.discovery import (
        DiscoveryError,
        gateway_lineup,
        gateway_models,
        openrouter_lineup,
        openrouter_upstreams,
    )

    big = json.dumps({"data": [{"id": f"org/model-{i}", "pad": "x" * 200} for i in range(6000)]})
    row = {"provider_name": "A", "tag": "a", "context_length": 1e12, "pricing": {"prompt": "x"}}
    hostile = {"data": {"endpoints": [row, {**row, "tag": "a-2"}, {**row, "tag": "a"}, 7, None]}}

    async def go():
        out = {}
        runner, url = await _serve(big.encode())
        try:
            out["ids"] = await gateway_models(url)
        finally:
            await runner.cleanup()
        runner, url = await _serve(json.dumps(hostile).encode())
        try:
            out["ups"] = await openrouter_upstreams("acme/m", base_url=url)
        finally:
            await runner.cleanup()
        runner, url = await _serve(b"x" * 9_000_000)
        try:
            with pytest.raises(DiscoveryError, match="passed"):
                await gateway_models(url)
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(go())
    assert len(out["ids"]) == 6000  # 1.4 MB, read whole
    text = gateway_lineup("http://gw/v1", out["ids"])
    assert text.count("- name:") == 500  # capped, and it loads
    ups = out["ups"]
    assert [u.context_length for u in ups] == [None, None, None]  # 1e12 is not believed
    lineup = parse_lineup(openrouter_lineup("acme/m", ups), resolve=resolve_lineup)
    assert [e.name for e in lineup.endpoints] == ["a", "a-2", "a-3"]
    with pytest.raises(DiscoveryError, match="not a listed upstream"):
        openrouter_lineup("acme/m", ups, reference="nope")
