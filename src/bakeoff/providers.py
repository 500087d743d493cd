"""Provider plugins: how an endpoint of a given `provider:` kind is reached.

A provider turns a lineup `Endpoint` into a base URL (starting something first if it must, as the fake
provider does) and the extra body fields it needs. Heavy dependencies are imported only in `start()`.
"""

from __future__ import annotations

from typing import Any

from bakeoff.lineups import Endpoint


class Provider:
    """Any OpenAI-compatible API (`provider: openai`, the default)."""

    name = "openai"
    upstream_field: str | None = "provider"
    """Response field naming the upstream that served the call (OpenRouter's `provider`)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def start(self) -> str:
        """Make the endpoint reachable; return its base URL."""
        assert self.endpoint.base_url is not None
        return self.endpoint.base_url

    async def stop(self) -> None:
        """Undo `start()`."""

    def extra_body(self) -> dict[str, Any]:
        body = dict(self.endpoint.extra_body)
        if self.endpoint.routing is not None:
            body["provider"] = self.endpoint.routing.model_dump(exclude_none=True)
        return body


class OpenRouterProvider(Provider):
    """OpenRouter: routing preferences in `provider`, the serving upstream in the response."""

    name = "openrouter"


class FakeProvider(Provider):
    """`provider: fake`: bakeoff starts a fake server on loopback for the run and stops it after."""

    name = "fake"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._server: Any = None

    async def start(self) -> str:
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
