"""An endpoint of a started session, as the packages that drive calls hold it: `EndpointHandle`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from bakeoff.endpoints import ClientOptions, EndpointClient
from bakeoff.lineups import Endpoint, Lineup
from bakeoff.plugins import get_provider
from bakeoff.providers import Provider, StartContext
from bakeoff.runs._cost import side_call_record
from bakeoff.runs._policy import CallPolicy, Outcome
from bakeoff.store import Store


@dataclass
class EndpointProgress:
    """Live counters for one endpoint (for the progress display)."""

    total: int = 0
    done: int = 0
    errors: int = 0
    tokens: int = 0
    busy_s: float = 0.0
    skipped: int = 0

    @property
    def tok_s(self) -> float:
        return self.tokens / self.busy_s if self.busy_s > 0 else 0.0


ProgressHook = Callable[[str, EndpointProgress], None]


class EndpointHandle:
    """One endpoint of an `EndpointSession`: its provider (what serves it), and once started its
    client and call policy, its progress counters and the hook told of them (`notify`)."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        lineup: Lineup,
        endpoint: Endpoint,
        api_key: str | None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.provider: Provider = get_provider(endpoint.provider)(endpoint)
        self.api_key = api_key
        self.progress = EndpointProgress()
        self._store, self._run_id, self._lineup = store, run_id, lineup
        self._on_progress = on_progress
        self._client: EndpointClient | None = None
        self._policy: CallPolicy | None = None
        self.rng = random.Random()
        """The policy's jitter."""

    @property
    def started(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> EndpointClient:
        """The wire client (one attempt per call, no slots or retries): perf's load generator's."""
        if self._client is None:
            raise RuntimeError(f"endpoint {self.endpoint.name!r} is not started")
        return self._client

    @property
    def policy(self) -> CallPolicy:
        """Every call of a run to this endpoint goes through it (slots, rate limit, retries)."""
        if self._policy is None:
            raise RuntimeError(f"endpoint {self.endpoint.name!r} is not started")
        return self._policy

    def notify(self) -> None:
        """Tell the progress hook of the counters as they are now."""
        if self._on_progress is not None:
            self._on_progress(self.endpoint.name, self.progress)

    async def start(self, ctx: StartContext, session: aiohttp.ClientSession) -> None:
        """Start what serves the endpoint; then its client (on `session`) and policy."""
        ep = self.endpoint
        base_url = await self.provider.start(ctx)
        ctx.resolved[ep.name] = base_url
        self._client = EndpointClient(
            session,
            base_url=base_url,
            model=ep.model,
            api_key=self.api_key,
            options=ClientOptions(
                headers=ep.headers,
                extra_body=self.provider.extra_body(),
                timeouts=ep.timeouts,
                limits=ep.limits,
                stream_usage=ep.stream_usage,
                upstream_field=self.provider.upstream_field,
                drop_fields=self.provider.drops,
            ),
        )
        self._policy = CallPolicy.for_endpoint(ep, self._client, self.rng)
        self._policy.on_side_call = self._bill_side_call

    def _bill_side_call(self, purpose: str, started: float, out: Outcome) -> None:
        """Keep the bill of a probe's or judge's call (`side_calls`): priced like the others."""
        self._store.record_side_call(
            side_call_record(
                self._run_id, self.endpoint, purpose, started, out, self._lineup.run.list_prices
            )
        )

    async def stop(self) -> None:
        await self.provider.stop()
