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
from typing import Any

from bakeoff.lineups import Endpoint, Lineup


@dataclass
class StartContext:
    """What a provider may know while starting: the lineup and the URLs resolved so far."""

    lineup: Lineup
    resolved: dict[str, str] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)


class Provider:
    """Any OpenAI-compatible API (`provider: openai`, the default)."""

    name = "openai"
    upstream_field: str | None = "provider"
    """Response field naming the upstream that served the call (OpenRouter's `provider`)."""
    after_others = False

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def start(self, ctx: StartContext) -> str:
        """Make the endpoint reachable; return its base URL."""
        assert self.endpoint.base_url is not None
        return self.endpoint.base_url

    async def stop(self) -> None:
        """Undo `start()`. Called even if `start()` failed half-way."""

    def extra_body(self) -> dict[str, Any]:
        body = dict(self.endpoint.extra_body)
        if self.endpoint.routing is not None:
            body["provider"] = self.endpoint.routing.model_dump(exclude_none=True)
        return body


class OpenRouterProvider(Provider):
    """OpenRouter: routing preferences in `provider`, the serving upstream in the response."""

    name = "openrouter"


class FakeProvider(Provider):
    """`provider: fake`: a fake server on loopback for the run, stopped after it."""

    name = "fake"

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

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.server: Any = None
        self.model_path: Any = None

    async def start(self, ctx: StartContext) -> str:
        from bakeoff.local import launch, threads_per_server, variant_path, wait_ready

        spec = self.endpoint.local
        assert spec is not None
        self.model_path = await asyncio.to_thread(variant_path, spec.variant)
        n_local = sum(1 for e in ctx.lineup.endpoints if e.provider == "local")
        self.server = launch(
            self.endpoint.name,
            self.model_path,
            alias=self.endpoint.model,
            port=spec.port,
            n_threads=spec.n_threads or threads_per_server(n_local),
            n_ctx=spec.n_ctx,
            n_batch=spec.n_batch,
            seed=spec.seed,
            engine=spec.engine,
            max_batch=spec.max_batch,
            forced_repetition_penalty=spec.forced_repetition_penalty,
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
        self.proxy = DistortionProxy(
            spec,
            ctx.resolved[spec.target],
            upstream_model=target.model,
            route_url=ctx.resolved[route.name] if route else None,
            route_model=route.model if route else None,
            tokenizer=tokenizer,
        )
        return str(await self.proxy.start())

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None
