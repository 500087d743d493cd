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
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

import aiohttp
import orjson

from bakeoff._procs import signals_call
from bakeoff.endpoints import (
    CallError,
    CallRequest,
    CallResult,
    ErrorClass,
    StoredRequest,
    open_session,
)
from bakeoff.lineups import Endpoint, Lineup, purposes
from bakeoff.providers import StartContext
from bakeoff.runs._cost import pinned_upstream, price_call
from bakeoff.runs._handle import EndpointHandle, EndpointProgress, ProgressHook
from bakeoff.runs._plan import (
    Job,
    api_keys,
    lineup_of_run,
    plan,
    planned_calls,
    suite_for,
)
from bakeoff.runs._policy import Attempt
from bakeoff.runs._scoring import (
    ScoringWorker,
    failed_score,
    score_timeout_s,
    scores_inline,
    scores_of,
)
from bakeoff.runs._stopping import Stopper, call_value, stored_values
from bakeoff.store import CallRecord, ScoreRow, Store, StoreError
from bakeoff.suites import Judge, Score


@dataclass
class RunOptions:
    use_cache: bool = False
    """Answer a call from the response cache when the same request (and repeat) was answered."""
    on_progress: ProgressHook | None = None
    environ: dict[str, str] | None = None


class RunStatus(StrEnum):
    """Where a run stands (the `runs.status` column holds the value)."""

    running = "running"
    complete = "complete"
    failed = "failed"
    """It raised: an endpoint could not start, the database could not be written, a bug."""
    interrupted = "interrupted"
    """Cancelled (Ctrl-C, SIGTERM) or still to finish: a resume goes on from what is stored."""


@dataclass
class RunOutcome:
    run_id: str
    status: RunStatus
    progress: dict[str, EndpointProgress] = field(default_factory=dict)


@dataclass(slots=True)
class _InFlight:
    """A call being made: its job, the request as stored, when it began and its attempts so far."""

    job: Job
    request: StoredRequest
    started: float
    attempts: list[Attempt] = field(default_factory=list)
    cached: bool = False


class _CallFields(TypedDict):
    """The fields of a stored call that do not depend on how it ended."""

    id: str
    run_id: str
    endpoint: str
    suite: str
    item_id: str
    repeat: int
    n_attempts: int
    cached: bool
    started_at: float
    finished_at: float
    request: StoredRequest
    pinned_upstream: str | None


class _EndpointRunner:
    """The jobs of one endpoint of a run: its workers, its stopping rule, its scorer process."""

    def __init__(
        self,
        handle: EndpointHandle,
        session: EndpointSession,
        peers: Mapping[str, EndpointHandle],
    ) -> None:
        self.handle = handle
        self.ep = ep = handle.endpoint
        self.store, self.run_id, self.lineup = session.store, session.run_id, session.lineup
        self.opts = session.opts
        self.defaults = self.lineup.sampling_for(ep)
        self.peers = peers
        """The endpoints of the session (for scorers that ask one of them, as a judge)."""
        stored = None
        if self.lineup.run.stop_when is not None:  # a resumed run: what was answered already
            stored = stored_values(
                self.store.calls_light(self.run_id),
                self.store.scores(self.run_id, light=True),
                ep.name,
            )
        self.stopper = Stopper(self.lineup, stored)
        """Which suites stopped early (`run.stop_when`)."""
        self.scorer = ScoringWorker()
        """The process that scores this endpoint's replies that are not scored inline."""

    async def stop(self) -> None:
        await self.scorer.close()

    async def _score(self, job: Job, result: CallResult) -> list[Score]:
        """The suite's scores of a result; a scorer that fails is recorded as a failed score, never a
        crash of the run. Only short replies to linear scorers are scored on the event loop; the
        others in a process under a deadline (`runs._scoring`), the code sandbox in its own."""
        try:
            suite = suite_for(self.lineup, job.suite)
            if suite.judge_endpoint:
                judge = self._judge(suite.judge_endpoint)
                return list(await suite.ascore(job.item, result, judge=judge))
            if suite.runs_model_code:
                return list(await suite.ascore(job.item, result))
        except Exception as e:
            return [failed_score(f"{type(e).__name__}: {e}")]
        if scores_inline(suite, result):
            return scores_of(suite.score, job.item, result)
        dataset = next((d for d in self.lineup.datasets if d.name == job.suite), None)
        ds_json = dataset.model_dump_json() if dataset is not None else None
        timeout = score_timeout_s(self.opts.environ)
        return await self.scorer.score(job.suite, ds_json, job.item, result, timeout)

    def _judge(self, name: str) -> Judge:
        """Ask endpoint `name` of the run (an LLM judge) one greedy question; its reply text."""
        peer = self.peers[name]

        async def ask(prompt: str) -> str:
            req = CallRequest(
                messages=[{"role": "user", "content": prompt}],
                params=dict(purposes.JUDGE),
                stream=False,
            )
            res = await peer.policy.billed("judge").call(req)
            return res.text

        return ask

    async def worker(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if self.stopper.skip(job.suite):  # precise enough: the rest of the suite is skipped
                self.handle.progress.done += 1
                self.handle.progress.skipped += 1
                self.handle.notify()
                continue
            await self.run_job(job)

    async def run_job(self, job: Job) -> None:
        client, policy = self.handle.client, self.handle.policy
        stream = self.ep.stream if job.stream is None else job.stream
        req = job.item.request(self.ep.api, stream, self.defaults, job.params)
        call = _InFlight(job, client.stored_request(req), time.time())
        result: CallResult | None = None
        error: CallError | None = None
        cache_key = _cache_key(self.ep, call.request, job.repeat)
        if self.opts.use_cache:
            hit = self.store.cache_get(cache_key)
            if hit is not None:
                try:
                    result = CallResult.model_validate(hit)
                    call.cached = True
                except ValueError:  # an entry that does not load back is a miss, asked again
                    result = None
        try:
            if result is None:
                outcome = await policy.attempt(req, call.attempts)
                result, error = outcome.result, outcome.error
        except asyncio.CancelledError:
            error = CallError(ErrorClass.cancelled, "run interrupted while the call was in flight")
            self._record(call, None, error, [])
            raise
        scores: list[Score] = []
        if result is not None:
            try:
                scores = await self._score(job, result)
            except asyncio.CancelledError:
                # not stored as a success without its scores: the resume asks again
                error = CallError(ErrorClass.cancelled, "run interrupted while scoring the reply")
                self._record(call, None, error, [])
                raise
        self._record(call, result, error, scores)
        if result is not None and not call.cached and self.opts.use_cache:
            entry = result.model_dump(mode="json")
            try:  # only what loads back is cached
                CallResult.model_validate(entry)
            except ValueError:
                pass
            else:
                self.store.cache_put(cache_key, entry)

    def _record(
        self,
        call: _InFlight,
        result: CallResult | None,
        error: CallError | None,
        scores: list[Score],
    ) -> None:
        """Store the call (a success with its scores, or its final error), then count it."""
        job = call.job
        fields = _CallFields(
            id=job.id,
            run_id=self.run_id,
            endpoint=self.ep.name,
            suite=job.suite,
            item_id=job.item.id,
            repeat=job.repeat,
            n_attempts=len(call.attempts),
            cached=call.cached,
            started_at=call.attempts[0]["started_at"] if call.attempts else call.started,
            finished_at=time.time(),
            request=call.request,
            pinned_upstream=pinned_upstream(self.ep),
        )
        if result is not None:
            list_prices = self.lineup.run.list_prices
            record = _success_record(fields, self.ep, result, list_prices)
        else:
            assert error is not None
            record = _error_record(fields, error)
        self.store.record_call(
            record,
            call.attempts,
            [
                ScoreRow(scorer=s.scorer, value=s.value, passed=s.passed, detail=s.detail)
                for s in scores
            ],
        )
        first = scores[0] if scores else None
        self.stopper.record(
            job.suite,
            job.item.id,
            call_value(first.passed, first.value) if result is not None and first else 0.0,
        )
        p = self.handle.progress
        p.done += 1
        if result is None:
            p.errors += 1
        elif not call.cached:
            p.tokens += result.completion_tokens or 0
            p.busy_s += (result.timings.end_ms or 0) / 1000
        self.handle.notify()


_NOT_IN_CACHE_KEY = {
    "name",
    "max_concurrency",
    "rate_limit",
    "timeouts",
    "limits",
    "retry",
    "price",
}


async def _start_all(
    handles: list[EndpointHandle], lineup: Lineup, session: aiohttp.ClientSession
) -> None:
    """Start every provider: independent ones at once, then those that sit in front of others."""
    ctx = StartContext(lineup, providers={h.endpoint.name: h.provider for h in handles})
    first = [h for h in handles if not h.provider.after_others]
    then = [h for h in handles if h.provider.after_others]
    for group in (first, then):
        results = await asyncio.gather(
            *(h.start(ctx, session) for h in group), return_exceptions=True
        )
        for res in results:
            if isinstance(res, BaseException):
                raise res


def _cache_key(ep: Endpoint, stored_req: StoredRequest, repeat: int) -> str:
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
    """The endpoints of a run, started (servers, proxies, clients) and ready to take jobs.

    `handles` holds the endpoints the session drives: every one of the lineup, or those named in
    `only` (the others are started too, for the proxies in front of them; `handle()` has them)."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        lineup: Lineup,
        opts: RunOptions,
        only: Iterable[str] | None = None,
    ) -> None:
        self.store, self.run_id, self.lineup, self.opts = store, run_id, lineup, opts
        self.keys = api_keys(lineup, opts.environ)
        store.add_secrets(k for k in self.keys.values() if k)
        self._all = {
            ep.name: EndpointHandle(store, run_id, lineup, ep, self.keys[ep.name], opts.on_progress)
            for ep in lineup.endpoints
        }
        wanted = None if only is None else set(only)
        self.handles: Mapping[str, EndpointHandle] = {
            n: h for n, h in self._all.items() if wanted is None or n in wanted
        }
        self._runners: dict[str, _EndpointRunner] = {}
        self._session: aiohttp.ClientSession | None = None

    def handle(self, name: str) -> EndpointHandle:
        """Any endpoint of the lineup, driven by the session or not (a proxy's target)."""
        return self._all[name]

    async def __aenter__(self) -> EndpointSession:
        self._session = open_session(limit=0, dns_ttl=300, cleanup_closed=True)
        try:
            await _start_all(list(self._all.values()), self.lineup, self._session)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(r.stop() for r in self._runners.values()), return_exceptions=True)
        await asyncio.gather(*(h.stop() for h in self._all.values()), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _runner(self, name: str) -> _EndpointRunner:
        r = self._runners.get(name)
        if r is None:
            r = self._runners[name] = _EndpointRunner(self.handles[name], self, self._all)
        return r

    async def run_jobs(self, jobs: dict[str, list[Job]]) -> None:
        """Run jobs per endpoint, each endpoint with its own concurrency, all at once."""
        tasks = []
        for name, js in jobs.items():
            r = self._runner(name)
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
    A SIGTERM cancels it like Ctrl-C: the calls in flight are stored as `cancelled` errors.
    """
    opts = opts or RunOptions()
    lineup = lineup_of_run(store, run_id)
    jobs = plan(store, run_id, lineup)
    per_ep_total = {
        ep.name: planned_calls(store, run_id, lineup, ep.name) for ep in lineup.endpoints
    }
    store.set_run_status(run_id, RunStatus.running.value)
    me = asyncio.current_task()
    status = RunStatus.interrupted
    session = EndpointSession(store, run_id, lineup, opts)
    try:
        with signals_call(me.cancel if me is not None else _nothing, *_CANCELS):
            async with session:
                for name, h in session.handles.items():
                    h.progress.total = per_ep_total[name]
                    h.progress.skipped = h.progress.done = per_ep_total[name] - len(jobs[name])
                    h.notify()
                await session.run_jobs(jobs)
                if after is not None:
                    await after(session)
                status = RunStatus.complete
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except BaseException:
        status = RunStatus.failed
        raise
    finally:
        # a database that cannot be written (the error being raised says why) leaves the run
        # `running` with a dead pid, which resumes like an interrupted one
        with contextlib.suppress(StoreError):
            store.set_run_status(run_id, status.value)
    return RunOutcome(run_id, status, {n: h.progress for n, h in session.handles.items()})


_CANCELS = (signal.SIGTERM,)
"""What cancels a run besides Ctrl-C (which Python raises as KeyboardInterrupt)."""


def _nothing() -> None:
    return None


def _error_record(fields: _CallFields, error: CallError) -> CallRecord:
    """The stored row of a call that ended in an error: its class, detail, status and body."""
    return CallRecord(
        **fields,
        status="error",
        error_class=str(error.error_class),
        error_detail=error.detail,
        http_status=error.status,
        response_raw=error.body,
    )


def _success_record(
    fields: _CallFields, ep: Endpoint, result: CallResult, list_prices: bool
) -> CallRecord:
    """The stored row of a successful call: what the reply said, when, and what it cost."""
    t = result.timings
    cost, cost_source = price_call(ep, result, cached=fields["cached"], list_prices=list_prices)
    return CallRecord(
        **fields,
        status="ok",
        response_raw=result.raw,
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
    )
