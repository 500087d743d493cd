"""Provider plugins: how an endpoint of a given `provider:` kind is reached.

A provider turns a lineup `Endpoint` into a base URL — starting something first if it must, as the
`fake`, `local` and `proxy` providers do — and the extra body fields it needs. Heavy dependencies
(llama.cpp) are imported only in `start()`, torch only in the transformers server's own process.
Providers with `after_others = True` start once every other endpoint of the lineup is reachable (a
proxy needs its target's URL).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bakeoff.endpoints import JsonObject
from bakeoff.lineups import Endpoint, Lineup


@dataclass
class StartContext:
    """What a provider may know while starting: the lineup and the URLs resolved so far."""

    lineup: Lineup
    resolved: dict[str, str] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)


class Provider:
    """Any OpenAI-compatible API (`provider: openai`, the default): OpenAI's own without a
    `base_url`, any other server with one.

    A provider is also a preset: what an endpoint of its kind gets when the lineup leaves it out
    (`resolve()`) — a base URL, the key variable, the engine or the fields that switch off its
    sampler defaults for the audit — and the body fields it refuses (`drops`: removed before
    sending, so a probe or the audit asking for them gets "not supported", not a 400)."""

    name = "openai"
    upstream_field: str | None = "provider"
    """Response field naming the upstream that served the call (OpenRouter's `provider`)."""
    after_others = False
    default_base_url: str | None = "https://api.openai.com/v1"
    default_key_env: str | None = "OPENAI_API_KEY"
    """Applies when the lineup gives neither `base_url` nor `api_key_env` (the preset's host)."""
    engine: str | None = None
    """Fills `Endpoint.engine` when unset (a self-hosted engine: vllm, sglang, llama.cpp)."""
    neutral_params: ClassVar[JsonObject | None] = None
    """Fills `Endpoint.neutral_params` when neither it nor an engine is set: the fields this
    provider takes that switch off its own sampler defaults."""
    drops: frozenset[str] = frozenset()
    """Body fields this provider refuses; removed from every request."""
    starts_server = False
    """True for providers that start what they serve (fake, local, proxy): no base URL needed."""
    summary = "OpenAI, or any OpenAI-compatible server given its `base_url`"
    """One line for the presets table (docs and `bakeoff providers`)."""

    @classmethod
    def resolve(cls, ep: Endpoint) -> tuple[Endpoint, str | None]:
        """The endpoint with the preset's defaults filled in, and a problem (or None): a provider
        with no default base URL needs one from the lineup."""
        update: dict[str, Any] = {}
        if ep.base_url is None and not cls.starts_server:
            if cls.default_base_url is None:
                return ep, f"base_url is required for provider {cls.name} (it has no default)"
            update["base_url"] = cls.default_base_url
            if ep.api_key_env is None and cls.default_key_env is not None:
                update["api_key_env"] = cls.default_key_env
        if ep.engine is None and cls.engine is not None:
            update["engine"] = cls.engine
        if ep.neutral_params is None and ep.engine is None and cls.neutral_params is not None:
            update["neutral_params"] = dict(cls.neutral_params)
        return (ep.model_copy(update=update) if update else ep), None

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def start(self, ctx: StartContext) -> str:
        """Make the endpoint reachable; return its base URL."""
        assert self.endpoint.base_url is not None
        return self.endpoint.base_url

    async def stop(self) -> None:
        """Undo `start()`. Called even if `start()` failed half-way."""

    def extra_body(self) -> JsonObject:
        body = dict(self.endpoint.extra_body)
        if self.endpoint.routing is not None:
            body["provider"] = self.endpoint.routing.model_dump(exclude_none=True)
        return body


class OpenRouterProvider(Provider):
    """OpenRouter: routing preferences in `provider`, the serving upstream in the response, the
    call's cost in `usage.cost`."""

    name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"
    default_key_env = "OPENROUTER_API_KEY"
    # OpenRouter's documented defaults, passed to the upstreams that take them
    neutral_params: ClassVar[JsonObject | None] = {
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
    }
    summary = "OpenRouter: routing (`routing:`), upstream per call, `usage.cost`"


def _preset(
    name: str,
    url: str | None,
    key: str | None,
    summary: str,
    *,
    engine: str | None = None,
    neutral: dict[str, Any] | None = None,
    drops: frozenset[str] = frozenset(),
) -> type[Provider]:
    """A hosted API or a self-hosted engine reached over the OpenAI-compatible wire."""
    return type(
        f"{name.capitalize()}Provider",
        (Provider,),
        {
            "name": name,
            "default_base_url": url,
            "default_key_env": key,
            "summary": summary,
            "engine": engine,
            "neutral_params": neutral,
            "drops": drops,
            "upstream_field": None,
            "__doc__": summary,
        },
    )


_NO_PENALTY = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
PRESETS: tuple[type[Provider], ...] = (
    _preset(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        "Together AI",
        neutral={"repetition_penalty": 1.0},
    ),
    _preset(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "Fireworks AI",
        neutral={"repetition_penalty": 1.0},
    ),
    _preset(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        "Groq: no logprobs, top_logprobs or logit_bias (a 400: removed); usage in `x_groq`",
        neutral={},
        drops=frozenset({"logprobs", "top_logprobs", "logit_bias"}),
    ),
    _preset(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        "DEEPINFRA_API_KEY",
        "DeepInfra",
        neutral=_NO_PENALTY,
    ),
    _preset(
        "vllm", "http://127.0.0.1:8000/v1", None, "a vLLM server (`vllm serve`)", engine="vllm"
    ),
    _preset("sglang", "http://127.0.0.1:30000/v1", None, "an SGLang server", engine="sglang"),
    _preset(
        "llamacpp",
        "http://127.0.0.1:8080/v1",
        None,
        "llama.cpp's `llama-server`",
        engine="llama.cpp",
    ),
    _preset(
        "ollama",
        "http://127.0.0.1:11434/v1",
        None,
        "Ollama's OpenAI-compatible API: its repeat penalty and top_k cannot be switched off "
        "there, and an over-long prompt is cut, not refused",
        neutral={},
    ),
    _preset(
        "lmstudio",
        "http://127.0.0.1:1234/v1",
        None,
        "LM Studio's local server",
        neutral={"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0},
    ),
)


class FakeProvider(Provider):
    """`provider: fake`: a fake server on loopback for the run, stopped after it."""

    name = "fake"
    starts_server = True
    default_base_url = None
    default_key_env = None
    summary = "bakeoff's fake provider on loopback (scripted replies, faults, personas)"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._server: Any = None

    async def start(self, ctx: StartContext) -> str:
        if self.endpoint.base_url:
            return self.endpoint.base_url
        from bakeoff.fake import FakeConfig, FakeServer, load_script

        spec = self.endpoint.fake
        assert spec is not None
        script = dict(spec.script)
        if spec.script_file:
            script.update(load_script(spec.script_file))
        cfg = FakeConfig(
            mode=spec.mode,
            script=script,
            reply=spec.reply,
            ttft_ms=spec.ttft_ms,
            itl_ms=spec.itl_ms,
            reply_tokens=spec.reply_tokens,
            capacity=spec.capacity,
            faults=spec.faults,
            seed=spec.seed,
            model=self.endpoint.model,
        )
        self._server = FakeServer(cfg)
        return str(await self._server.start())

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


class LocalProvider(Provider):
    """`provider: local`: a server of one variant of the packaged model, for the run — llama.cpp's,
    or bakeoff's own over transformers (`local.engine`)."""

    name = "local"
    upstream_field = None
    starts_server = True
    default_base_url = None
    default_key_env = None
    summary = "a server of the packaged model bakeoff starts (llama.cpp or transformers)"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.server: Any = None
        self.model_path: Any = None

    async def start(self, ctx: StartContext) -> str:
        from bakeoff.local import (
            ServerSettings,
            launch,
            threads_per_server,
            variant_path,
            wait_ready,
        )

        spec = self.endpoint.local
        assert spec is not None
        self.model_path = await asyncio.to_thread(variant_path, spec.variant)
        n_local = sum(1 for e in ctx.lineup.endpoints if e.provider == "local")
        self.server = launch(
            self.endpoint.name,
            self.model_path,
            alias=self.endpoint.model,
            port=spec.port,
            settings=ServerSettings(
                n_threads=spec.n_threads or threads_per_server(n_local),
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                seed=spec.seed,
                engine=spec.engine,
                max_batch=spec.max_batch,
                forced_repetition_penalty=spec.forced_repetition_penalty,
            ),
        )
        await wait_ready(self.server)
        return str(self.server.url)

    async def stop(self) -> None:
        if self.server is not None:
            from bakeoff.local import stop

            await asyncio.to_thread(stop, self.server)
            self.server = None


class ProxyProvider(Provider):
    """`provider: proxy`: a distortion proxy in front of another endpoint of the lineup."""

    name = "proxy"
    upstream_field = None
    after_others = True
    starts_server = True
    default_base_url = None
    default_key_env = None
    summary = "a distortion proxy in front of another endpoint of the lineup"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.proxy: Any = None

    async def start(self, ctx: StartContext) -> str:
        from bakeoff.proxy import DistortionProxy, GGUFTokenizer

        spec = self.endpoint.proxy
        assert spec is not None
        target = ctx.lineup.endpoint(spec.target)
        tokenizer = None
        behind = ctx.providers.get(spec.target)
        if spec.truncate_prompt_tokens and isinstance(behind, LocalProvider):
            tokenizer = await asyncio.to_thread(GGUFTokenizer, behind.model_path)
        route = ctx.lineup.endpoint(spec.route_to) if spec.route_to else None
        switch = ctx.lineup.endpoint(spec.switch_to) if spec.switch_to else None
        self.proxy = DistortionProxy(
            spec,
            ctx.resolved[spec.target],
            upstream_model=target.model,
            route_url=ctx.resolved[route.name] if route else None,
            route_model=route.model if route else None,
            tokenizer=tokenizer,
            switch_url=ctx.resolved[switch.name] if switch else None,
            switch_model=switch.model if switch else None,
        )
        return str(await self.proxy.start())

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None
