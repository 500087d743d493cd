"""The HTTP reference scorer's scoring calls as calls of the run: through the scorer endpoint's
`CallPolicy` (`billed("scorer")`: its concurrency slots, rate limit and retries), each call's bill
kept with the run (`side_calls`, purpose `scorer`) — so scoring on a hosted provider is on the run's
bill and in the audit's cost (`runs.audit_costs`: the `scorer` row).

The analysis, and so the scorer, runs on a thread of its own (`_source.off_loop`) while the run's
event loop stays free: each scoring call is handed to that loop (`run_coroutine_threadsafe`) and
its thread waits for the answer. What the wire client bounds, it bounds here too: the endpoint's
`timeouts` (a deadline for the whole answer), its `limits` (an endless or oversized body is cut at
`max_response_bytes`, `too_large`), strict JSON; a failed call is retried as the endpoint's
`retry` allows, and what is left is one `ReferenceScorerError` naming its class. The answer's
fields are then checked as every scorer answer is (`_scorer._checked_echo`).

Only `/v1/completions` goes this way: the template and tokenizer routes (`/apply-template`,
vLLM's `/tokenize`) are free and stay on `endpoints.post_json`, and so does the vLLM scorer's
batched `prompt_logprobs` (its fields beyond `choices[0]` are not what the wire client reads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

from bakeoff.audit._scorer_wire import ReferenceScorerError
from bakeoff.endpoints import CallError, CallRequest, redacted

if TYPE_CHECKING:
    from bakeoff.runs import CallPolicy

PURPOSE = "scorer"
"""The purpose a scoring call's bill is kept under (`side_calls.purpose`)."""


class PolicyCompletions:
    """`/v1/completions` scoring calls made through a run's call policy from another thread."""

    def __init__(
        self,
        policy: CallPolicy,
        loop: asyncio.AbstractEventLoop,
        name: str,
        secret: str | None = None,
    ) -> None:
        self.billed = policy.billed(PURPOSE)
        self.loop, self.name = loop, name
        self.secret = secret
        """The scorer's key: never in an error's text (`endpoints.redacted`)."""

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to `body` (a completions body) in the OpenAI shape the scorer reads:
        `choices[0].logprobs` and `usage.prompt_tokens` as the endpoint's reply held them."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:  # waiting here for the loop would stop it for good
            raise ReferenceScorerError("the scorer was called on the run's event loop")
        params = {k: v for k, v in body.items() if k not in ("model", "prompt", "stream")}
        req = CallRequest(api="completions", prompt=body["prompt"], params=params, stream=False)
        fut = asyncio.run_coroutine_threadsafe(self.billed.call(req), self.loop)
        try:
            result = self._wait(fut)
        except CallError as e:
            shown = f": {redacted(e.body, self.secret)}" if e.body else ""
            raise ReferenceScorerError(
                f"the scorer {self.name}'s /completions: {e.error_class}: {e.detail}{shown}",
                e.status,
            ) from None
        lp = result.logprobs[0] if result.logprobs else None
        usage = None if result.prompt_tokens is None else {"prompt_tokens": result.prompt_tokens}
        return {"choices": [{"logprobs": lp}], "usage": usage}

    def _wait(self, fut: concurrent.futures.Future[Any]) -> Any:
        """The call's result; a run that ended meanwhile (its loop closed, the call cancelled)
        is an error, never a thread waiting forever."""
        while True:
            try:
                return fut.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self.loop.is_closed() or not self.loop.is_running():
                    fut.cancel()
                    raise ReferenceScorerError("the run ended while the scorer waited") from None
            except concurrent.futures.CancelledError:
                raise ReferenceScorerError("the scorer's call was cancelled") from None
