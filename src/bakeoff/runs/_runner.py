"""The runner: endpoint × item × repeat → calls, every endpoint progressing at once.

Each endpoint gets `max_concurrency` workers pulling from its own queue, its own rate limiter and its
own retry policy. Each finished call (success or final error) is written to the store in one
transaction, with its attempts and scores, before the next is taken. Cancellation (Ctrl-C, SIGTERM)
stops the workers at their next await; the calls cut short are stored as `cancelled` errors and the
run is marked interrupted. Resuming issues only calls without a stored success.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bakeoff.endpoints import (
    CallError,
    CallRequest,
    CallResult,
    EndpointClient,
    ErrorClass,
    open_session,
)
from bakeoff.lineups import Endpoint, Lineup, purposes
from bakeoff.plugins import get_provider
from bakeoff.providers import StartContext
from bakeoff.runs._cost import pinned_upstream, price_call, side_call_record
from bakeoff.runs._plan import (
    Job,
    api_keys,
    lineup_of_run,
    plan,
    planned_calls,
    suite_for,
)
from bakeoff.runs._policy import CallPolicy, Outcome
from bakeoff.runs._scoring import (
    ScoringWorker,
    failed_score,
    score_timeout_s,
    scores_inline,
    scores_of,
)
from bakeoff.runs._stopping import Stopper, call_value, stored_values
from bakeoff.store import CallRecord, Store, StoreError, dumps
from bakeoff.suites import Score


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


@dataclass
class RunOptions:
    use_cache: bool = False
    """Answer a call from the response cache when the same request (and repeat) was answered."""
    on_progress: Callable[[str, EndpointProgress], None] | None = None
    environ: dict[str, str] | None = None


@dataclass
class RunOutcome:
    run_id: str
    status: str
    progress: dict[str, EndpointProgress] = field(default_factory=dict)


class _EndpointRunner:
    def __init__(
        self,
        store: Store,
        run_id: str,
        lineup: Lineup,
        ep: Endpoint,
        session: aiohttp.ClientSession,
        opts: RunOptions,
        api_key: str | None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.ep = ep
        self.lineup = lineup
        self.opts = opts
        self.provider = get_provider(ep.provider)(ep)
        self.session = session
        self.api_key = api_key
        self.defaults = lineup.sampling_for(ep)
        self.progress = EndpointProgress()
        self.client: EndpointClient | None = None
        self.policy: CallPolicy | None = None
        """Every call to this endpoint goes through it (slots, rate limit, retries)."""
        self.rng = random.Random()
        self.peers: dict[str, _EndpointRunner] = {}
        """The other endpoints of the session (for scorers that ask one of them, as a judge)."""
        stored = None
        if lineup.run.stop_when is not None:  # a resumed run: what was answered already
            stored = stored_values(
                store.calls_light(run_id), store.scores(run_id, light=True), ep.name
            )
        self.stopper = Stopper(lineup, stored)
        self.scorer = ScoringWorker()
        """The process that scores this endpoint's replies that are not scored inline."""
        """Which suites stopped early (`run.stop_when`)."""

    async def start(self, ctx: StartContext) -> None:
        base_url = await self.provider.start(ctx)
        ctx.resolved[self.ep.name] = base_url
        self.client = EndpointClient(
            self.session,
            base_url=base_url,
            model=self.ep.model,
            api_key=self.api_key,
            headers=self.ep.headers,
            extra_body=self.provider.extra_body(),
            timeouts=self.ep.timeouts,
            limits=self.ep.limits,
            stream_usage=self.ep.stream_usage,
            upstream_field=self.provider.upstream_field,
            drop_fields=self.provider.drops,
        )
        self.policy = CallPolicy.for_endpoint(self.ep, self.client, self.rng)
        self.policy.on_side_call = self._bill_side_call

    def _bill_side_call(self, purpose: str, started: float, out: Outcome) -> None:
        """Keep the bill of a probe's or judge's call (`side_calls`): priced like the others."""
        self.store.record_side_call(
            side_call_record(
                self.run_id, self.ep, purpose, started, out, self.lineup.run.list_prices
            )
        )

    async def stop(self) -> None:
        await self.scorer.close()
        await self.provider.stop()

    async def _score(self, job: Job, result: CallResult) -> list[Score]:
        """The suite's scores of a result; a scorer that fails is recorded as a failed score, never a
        crash of the run. Only short replies to linear scorers are scored on the event loop; the
        others in a process under a deadline (`runs._scoring`), the code sandbox in its own."""
        try:
            suite = suite_for(self.lineup, job.suite)
            spec = getattr(suite, "spec", None)
            if spec is not None and getattr(spec, "judge", None):
                return list(await suite.ascore(job.item, result, judge=self._judge(spec.judge)))
            if getattr(suite, "runs_model_code", False) and hasattr(suite, "ascore"):
                return list(await suite.ascore(job.item, result))
        except Exception as e:
            return [failed_score(f"{type(e).__name__}: {e}")]
        if scores_inline(suite, result):
            return scores_of(suite, job.item, result)
        dataset = next((d for d in self.lineup.datasets if d.name == job.suite), None)
        ds_json = dataset.model_dump_json() if dataset is not None else None
        timeout = score_timeout_s(self.opts.environ)
        return await self.scorer.score(job.suite, ds_json, job.item, result, timeout)

    def _judge(self, name: str) -> Callable[[str], Awaitable[str]]:
        """Ask endpoint `name` of the run (an LLM judge) one greedy question; its reply text."""
        peer = self.peers[name]

        async def ask(prompt: str) -> str:
            assert peer.policy is not None
            req = CallRequest(
                messages=[{"role": "user", "content": prompt}],
                params=dict(purposes.JUDGE),
                stream=False,
            )
            res = await peer.policy.billed("judge").call(req)
            return res.text

        return ask

    def _notify(self) -> None:
        if self.opts.on_progress:
            self.opts.on_progress(self.ep.name, self.progress)

    async def worker(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if self.stopper.skip(job.suite):  # precise enough: the rest of the suite is skipped
                self.progress.done += 1
                self.progress.skipped += 1
                self._notify()
                continue
            await self.run_job(job)

    async def run_job(self, job: Job) -> None:
        assert self.client is not None and self.policy is not None
        client, policy = self.client, self.policy
        stream = self.ep.stream if job.stream is None else job.stream
        req = job.item.request(self.ep.api, stream, self.defaults)
        if job.params:
            req.params.update(job.params)
        stored_req = client.stored_request(req)
        started = time.time()
        attempts: list[dict[str, Any]] = []
        result: CallResult | None = None
        error: CallError | None = None
        cached = False
        cache_key = _cache_key(self.ep, stored_req, job.repeat)
        if self.opts.use_cache:
            hit = self.store.cache_get(cache_key)
            if hit is not None:
                try:
                    result = CallResult.model_validate(hit)
                    cached = True
                except ValueError:  # an entry that does not load back is a miss, asked again
                    result = None
        try:
            if result is None:
                outcome = await policy.attempt(req, attempts)
                result, error = outcome.result, outcome.error
        except asyncio.CancelledError:
            error = CallError(ErrorClass.cancelled, "run interrupted while the call was in flight")
            self._record(job, stored_req, started, attempts, None, error, False, [])
            raise
        scores: list[Score] = []
        if result is not None:
            try:
                scores = await self._score(job, result)
            except asyncio.CancelledError:
                # not stored as a success without its scores: the resume asks again
                error = CallError(ErrorClass.cancelled, "run interrupted while scoring the reply")
                self._record(job, stored_req, started, attempts, None, error, False, [])
                raise
        self._record(job, stored_req, started, attempts, result, error, cached, scores)
        if result is not None and not cached and self.opts.use_cache:
            entry = result.model_dump(mode="json")
            try:  # only what loads back is cached
                CallResult.model_validate(entry)
            except ValueError:
                pass
            else:
                self.store.cache_put(cache_key, entry)

    def _record(
        self,
        job: Job,
        stored_req: dict[str, Any],
        started: float,
        attempts: list[dict[str, Any]],
        result: CallResult | None,
        error: CallError | None,
        cached: bool,
        scores: list[Score],
    ) -> None:
        common: dict[str, Any] = dict(
            id=job.id,
            run_id=self.run_id,
            endpoint=self.ep.name,
            suite=job.suite,
            item_id=job.item.id,
            repeat=job.repeat,
            n_attempts=len(attempts),
            cached=cached,
            started_at=attempts[0]["started_at"] if attempts else started,
            finished_at=time.time(),
            request=stored_req,
        )
        if result is not None:
            list_prices = self.lineup.run.list_prices
            record = _success_record(common, self.ep, result, cached, list_prices)
        else:
            assert error is not None
            record = CallRecord(
                **common,
                status="error",
                error_class=str(error.error_class),
                error_detail=error.detail,
                http_status=error.status,
                response_raw=error.body,
                pinned_upstream=pinned_upstream(self.ep),
            )
        self.store.record_call(record, attempts, [s.model_dump() for s in scores])
        first = scores[0] if scores else None
        self.stopper.record(
            job.suite,
            job.item.id,
            call_value(first.passed, first.value) if result is not None and first else 0.0,
        )
        p = self.progress
        p.done += 1
        if result is None:
            p.errors += 1
        elif not cached:
            p.tokens += result.completion_tokens or 0
            p.busy_s += (result.timings.end_ms or 0) / 1000
        self._notify()


_NOT_IN_CACHE_KEY = {
    "name",
    "max_concurrency",
    "rate_limit",
    "timeouts",
    "limits",
    "retry",
    "price",
}


async def _start_all(runners: list[_EndpointRunner], lineup: Lineup) -> None:
    """Start every provider: independent ones at once, then those that sit in front of others."""
    ctx = StartContext(lineup, providers={r.ep.name: r.provider for r in runners})
    first = [r for r in runners if not r.provider.after_others]
    then = [r for r in runners if r.provider.after_others]
    for group in (first, then):
        results = await asyncio.gather(*(r.start(ctx) for r in group), return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                raise res


def _cache_key(ep: Endpoint, stored_req: dict[str, Any], repeat: int) -> str:
    """Same endpoint definition (as configured, not the port it got), same body, same repeat."""
    data = orjson.dumps(
        {
            "endpoint": ep.model_dump(mode="json", exclude=_NOT_IN_CACHE_KEY),
            "path": stored_req["url"].rsplit("/", 1)[-1],
            "body": stored_req["body"],
            "repeat": repeat,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(data).hexdigest()


class EndpointSession:
    """The endpoints of a run, started (servers, proxies, clients) and ready to take jobs."""

    def __init__(self, store: Store, run_id: str, lineup: Lineup, opts: RunOptions) -> None:
        self.store, self.run_id, self.lineup, self.opts = store, run_id, lineup, opts
        self.keys = api_keys(lineup, opts.environ)
        store.add_secrets(k for k in self.keys.values() if k)
        self.runners: dict[str, _EndpointRunner] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EndpointSession:
        self._session = open_session(limit=0, dns_ttl=300, cleanup_closed=True)
        for ep in self.lineup.endpoints:
            self.runners[ep.name] = _EndpointRunner(
                self.store,
                self.run_id,
                self.lineup,
                ep,
                self._session,
                self.opts,
                self.keys[ep.name],
            )
        for r in self.runners.values():
            r.peers = self.runners
        try:
            await _start_all(list(self.runners.values()), self.lineup)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners.values()), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_jobs(self, jobs: dict[str, list[Job]]) -> None:
        """Run jobs per endpoint, each endpoint with its own concurrency, all at once."""
        tasks = []
        for name, js in jobs.items():
            r = self.runners[name]
            q: asyncio.Queue[Job] = asyncio.Queue()
            for j in js:
                q.put_nowait(j)
            tasks += [asyncio.create_task(r.worker(q)) for _ in range(r.ep.max_concurrency)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


RunHook = Callable[[EndpointSession], Awaitable[None]]


async def execute(
    store: Store, run_id: str, opts: RunOptions | None = None, after: RunHook | None = None
) -> RunOutcome:
    """Run (or resume) a stored run until every call has a final outcome, or until cancelled.

    `after`, if given, runs with the endpoints still up once the suites are done (the audit does).
    """
    opts = opts or RunOptions()
    lineup = lineup_of_run(store, run_id)
    jobs = plan(store, run_id, lineup)
    per_ep_total = {
        ep.name: planned_calls(store, run_id, lineup, ep.name) for ep in lineup.endpoints
    }
    store.set_run_status(run_id, "running")

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    installed = False
    before = signal.getsignal(signal.SIGTERM)
    if me is not None and before is not signal.SIG_IGN:
        try:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
            installed = True
        except (NotImplementedError, RuntimeError):
            pass

    status = "interrupted"
    session = EndpointSession(store, run_id, lineup, opts)
    try:
        async with session:
            for name, r in session.runners.items():
                r.progress.total = per_ep_total[name]
                r.progress.skipped = r.progress.done = per_ep_total[name] - len(jobs[name])
                r._notify()
            await session.run_jobs(jobs)
            if after is not None:
                await after(session)
            status = "complete"
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)  # which sets SIG_DFL: put back ours
            if before is not None:
                signal.signal(signal.SIGTERM, before)
        # a database that cannot be written (the error being raised says why) leaves the run
        # `running` with a dead pid, which resumes like an interrupted one
        with contextlib.suppress(StoreError):
            store.set_run_status(run_id, status)
    return RunOutcome(run_id, status, {n: r.progress for n, r in session.runners.items()})


def _success_record(
    common: dict[str, Any], ep: Endpoint, result: CallResult, cached: bool, list_prices: bool
) -> CallRecord:
    """The stored row of a successful call: what the reply said, when, and what it cost."""
    t = result.timings
    cost, cost_source = price_call(ep, result, cached=cached, list_prices=list_prices)
    return CallRecord(
        **common,
        status="ok",
        response_raw=result.raw if isinstance(result.raw, str) else dumps(result.raw),
        http_status=result.status,
        output_text=result.text,
        reasoning_text=result.reasoning,
        finish_reason=result.finish_reason,
        tool_calls=[tc.model_dump() for tc in result.tool_calls] or None,
        logprobs=result.logprobs,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        usage_source=result.usage_source,
        upstream=result.upstream,
        response_model=result.response_model,
        first_byte_ms=t.first_byte_ms,
        role_ms=t.role_ms,
        ttft_ms=t.first_token_ms,
        last_token_ms=t.last_token_ms,
        e2e_ms=t.end_ms,
        chunk_ms=t.token_chunk_ms or None,
        cached_tokens=result.cached_prompt_tokens,
        cost_usd=cost,
        cost_source=cost_source,
        pinned_upstream=pinned_upstream(ep),
    )
