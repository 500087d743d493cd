"""The one way a call of a run reaches one of its endpoints: its concurrency slots, its rate limit,
its retry policy and the record of every attempt.

Every caller goes through the endpoint's `CallPolicy`: suite jobs and the fidelity audit's jobs
(`runs._runner`'s workers), LLM judges of a dataset scorer, the arena's judge, and the capability
probes. So `max_concurrency`, `rate_limit` (rpm and tpm) and `retry` hold for the run as a whole, not
per kind of call. Not through it: perf's load generator calls `EndpointClient` directly, on
purpose (it measures the endpoint under the load it sets, not under our politeness); the preflight
makes one listing check and one one-token call per endpoint before the run exists (those calls
billed to the run once it does); and, of the audit's HTTP reference scorer (`scorer: endpoint`),
the free template and tokenizer routes and the vLLM scorer's batched requests, which post over
`endpoints.post_json`, bounded but not billed. Its echo scoring calls do go through the policy
(`billed("scorer")`, `audit._scorer_policy`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bakeoff.endpoints import (
    CallError,
    CallRequest,
    CallResult,
    EndpointClient,
    ErrorClass,
    RetryPolicy,
    decide,
)
from bakeoff.lineups import Endpoint
from bakeoff.runs._ratelimit import RateLimiter
from bakeoff.store import Attempt as Attempt


@dataclass
class Outcome:
    """What became of one call: a result or the final error, and every attempt made."""

    result: CallResult | None = None
    error: CallError | None = None
    attempts: list[Attempt] = field(default_factory=list)


class CallPolicy:
    """An endpoint's client behind its slots, rate limit and retries."""

    def __init__(
        self,
        client: EndpointClient,
        *,
        retry: RetryPolicy,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.retry = retry
        self.limiter = RateLimiter(rpm, tpm)
        self.slots = asyncio.Semaphore(max(1, max_concurrency))
        self.rng = rng or random.Random()
        self.on_side_call: Callable[[str, float, Outcome], None] | None = None
        """Told of every call made through `billed()` (the run stores its bill)."""

    @classmethod
    def for_endpoint(
        cls, ep: Endpoint, client: EndpointClient, rng: random.Random | None = None
    ) -> CallPolicy:
        """The policy the endpoint's lineup entry declares: its `retry`, `rate_limit` (rpm, tpm)
        and `max_concurrency`, said once."""
        return cls(
            client,
            retry=ep.retry,
            rpm=ep.rate_limit.rpm,
            tpm=ep.rate_limit.tpm,
            max_concurrency=ep.max_concurrency,
            rng=rng,
        )

    async def call(self, req: CallRequest) -> CallResult:
        """The result, after the retries the policy allows; else the last attempt's `CallError`."""
        return _result_of(await self.attempt(req))

    def billed(self, purpose: str) -> Billed:
        """A caller through this policy whose every call is reported to `on_side_call` under
        `purpose` (`probe`, `judge`, `arena-judge`): calls a run makes beside its suite and audit
        calls, so that its bill counts them too."""
        return Billed(self, purpose)

    async def attempt(self, req: CallRequest, attempts: list[Attempt] | None = None) -> Outcome:
        """Attempts until one succeeds or the retry policy gives up. Each attempt holds a slot and
        passes the rate limit; backoff waits hold neither. `attempts` (the caller's list, so that an
        interrupted call keeps what was tried) receives one record per attempt."""
        out = Outcome(attempts=attempts if attempts is not None else [])
        n = 0
        while True:
            n += 1
            async with self.slots:
                await self.limiter.acquire()
                started = time.time()
                t0 = time.perf_counter()
                try:
                    result = await self._once(req)
                except CallError as e:
                    decision = decide(self.retry, n, e, self.rng)
                    out.attempts.append(
                        {
                            "n": n,
                            "started_at": started,
                            "duration_ms": (time.perf_counter() - t0) * 1000,
                            "http_status": e.status,
                            "error_class": str(e.error_class),
                            "error_detail": e.detail
                            + (f" | body: {e.body[:200]}" if e.body else ""),
                            "decision": "retry" if decision.retry else "give_up",
                            "decision_reason": decision.reason,
                            "wait_s": decision.wait_s,
                        }
                    )
                    if not decision.retry:
                        out.error = e
                        return out
                else:
                    out.attempts.append(
                        {
                            "n": n,
                            "started_at": started,
                            "duration_ms": (time.perf_counter() - t0) * 1000,
                            "http_status": result.status,
                            "decision": "ok",
                        }
                    )
                    self.limiter.charge(
                        (result.prompt_tokens or 0) + (result.completion_tokens or 0)
                    )
                    out.result = result
                    return out
            await asyncio.sleep(decision.wait_s)

    async def _once(self, req: CallRequest) -> CallResult:
        try:
            return await self.client.call(req)
        except (CallError, asyncio.CancelledError):
            raise
        except Exception as e:  # a reply no check foresaw: one bad call, not a crash
            raise CallError(
                ErrorClass.bad_response,
                f"the reply could not be read: {type(e).__name__}: {str(e)[:200]}",
            ) from None


def _result_of(out: Outcome) -> CallResult:
    if out.result is None:
        assert out.error is not None
        raise out.error
    return out.result


class Billed:
    """`CallPolicy.billed()`: the policy's calls, each one's bill reported under a purpose."""

    def __init__(self, policy: CallPolicy, purpose: str) -> None:
        self.policy, self.purpose = policy, purpose

    async def call(self, req: CallRequest) -> CallResult:
        started = time.time()
        out = await self.policy.attempt(req)
        if self.policy.on_side_call is not None:
            self.policy.on_side_call(self.purpose, started, out)
        return _result_of(out)
