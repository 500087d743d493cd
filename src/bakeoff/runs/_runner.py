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
import functools
import hashlib
import os
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bakeoff._version import __version__
from bakeoff.endpoints import (
    CallError,
    CallRequest,
    CallResult,
    EndpointClient,
    ErrorClass,
)
from bakeoff.lineups import Endpoint, Lineup, purposes
from bakeoff.plugins import get_provider, get_suite
from bakeoff.providers import StartContext
from bakeoff.runs._policy import CallPolicy
from bakeoff.store import CallRecord, Store, StoreError, dumps
from bakeoff.suites import Item, Score


def call_id(run_id: str, endpoint: str, suite: str, item_id: str, repeat: int) -> str:
    """Deterministic call id: the same call of the same run always has the same id."""
    h = hashlib.sha256(f"{run_id}\x00{endpoint}\x00{suite}\x00{item_id}\x00{repeat}".encode())
    return h.hexdigest()[:24]


def config_hash(lineup: Lineup) -> str:
    data = orjson.dumps(lineup.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:16]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def api_keys(lineup: Lineup, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each endpoint's API key, from the variable its `api_key_env` names (None without one)."""
    env = os.environ if environ is None else environ
    return {ep.name: env.get(ep.api_key_env) if ep.api_key_env else None for ep in lineup.endpoints}


def create_run(
    store: Store,
    lineup: Lineup,
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Store a new run: its lineup, endpoints and the items of every suite (generated once, here).
    The keys are known to the store before anything is written: a key pasted into a dataset is
    scrubbed from the items as from the calls."""
    store.add_secrets(k for k in api_keys(lineup, environ).values() if k)
    run_id = new_run_id()
    store.create_run(
        run_id,
        config_hash=config_hash(lineup),
        lineup_json=lineup.model_dump_json(),
        source=source,
        reference=lineup.reference,
        endpoints=[ep.model_dump(mode="json") for ep in lineup.endpoints],
        version=__version__,
    )
    for name in lineup.run.suites:
        items = suite_items(lineup, name)
        store.add_items(run_id, name, [it.stored() for it in items])
    return run_id


@functools.lru_cache(maxsize=64)
def _dataset_suite(spec_json: str) -> Any:
    from bakeoff.lineups import DatasetSpec
    from bakeoff.suites.datasets import DatasetSuite

    return DatasetSuite(DatasetSpec.model_validate_json(spec_json))


def suite_for(lineup: Lineup, name: str) -> Any:
    """The suite a lineup means by `name`: one of its own datasets, else a registered suite."""
    for ds in lineup.datasets:
        if ds.name == name:
            return _dataset_suite(ds.model_dump_json())
    return get_suite(name)


def claimed_context(ep: Endpoint) -> int | None:
    if ep.context is not None:
        return ep.context
    if ep.local is not None:
        return ep.local.n_ctx
    return None


def suite_options(lineup: Lineup, name: str) -> dict[str, Any]:
    opts = dict(lineup.run.suite_options.get(name, {}))
    if name == "long-context" and "max_context" not in opts:
        claims = [c for c in map(claimed_context, lineup.endpoints) if c]
        opts["max_context"] = max(claims) if claims else 4096
    return opts


def suite_items(lineup: Lineup, name: str) -> list[Item]:
    """The items of a suite for this lineup (its seed, limit and the suite's options)."""
    suite = suite_for(lineup, name)
    opts = suite_options(lineup, name)
    try:
        return list(suite.items(seed=lineup.run.seed, n=lineup.run.limit, **opts))
    except TypeError as e:
        if not opts:
            raise
        raise ValueError(f"suite {name!r} does not take the options {sorted(opts)}: {e}") from None


def fits(ep: Endpoint, item: Item) -> bool:
    """Whether an item is within what the endpoint claims (long-context items beyond its context
    are not sent to it)."""
    need = item.meta.get("context_tokens")
    claim = claimed_context(ep)
    return need is None or claim is None or need <= claim


def lineup_of_run(store: Store, run_id: str) -> Lineup:
    row = store.run(run_id)
    if row is None:
        raise KeyError(run_id)
    return Lineup.model_validate_json(row["lineup_json"])


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
    use_cache: bool = True
    """Answer a call from the response cache when the same request (and repeat) was answered."""
    on_progress: Callable[[str, EndpointProgress], None] | None = None
    environ: dict[str, str] | None = None


@dataclass
class Job:
    """One call to make: an item of a suite, the repeat index, optional body overrides."""

    id: str
    suite: str
    item: Item
    repeat: int
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool | None = None
    """Override the endpoint's `stream` (the audit asks without streaming, to get usage)."""


@dataclass
class RunOutcome:
    run_id: str
    status: str
    progress: dict[str, EndpointProgress] = field(default_factory=dict)


LARGE_OUTPUT_CHARS = 200_000
"""Replies longer than this are scored in a worker thread, off the event loop."""


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
        )
        self.policy = CallPolicy.for_endpoint(self.ep, self.client, self.rng)

    async def stop(self) -> None:
        await self.provider.stop()

    async def _score(self, job: Job, result: CallResult) -> list[Score]:
        """The suite's scores of a result; a scorer that fails is recorded as a failed score, never a
        crash of the run. Scorers that do real work (the code sandbox) run off the event loop."""
        try:
            suite = suite_for(self.lineup, job.suite)
            spec = getattr(suite, "spec", None)
            if spec is not None and getattr(spec, "judge", None):
                return list(await suite.ascore(job.item, result, judge=self._judge(spec.judge)))
            if hasattr(suite, "ascore"):
                return list(await suite.ascore(job.item, result))
            if len(result.text) + len(result.reasoning or "") > LARGE_OUTPUT_CHARS:
                # a long reply's regexes and parsing must not hold the other endpoints' streams
                return list(await asyncio.to_thread(suite.score, job.item, result))
            return list(suite.score(job.item, result))
        except Exception as e:
            return [
                Score(
                    scorer="scorer_error",
                    value=0.0,
                    passed=False,
                    detail=f"{type(e).__name__}: {e}",
                )
            ]

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
            res = await peer.policy.call(req)
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
            t = result.timings
            record = CallRecord(
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
            )
        else:
            assert error is not None
            record = CallRecord(
                **common,
                status="error",
                error_class=str(error.error_class),
                error_detail=error.detail,
                http_status=error.status,
                response_raw=error.body,
            )
        self.store.record_call(record, attempts, [s.model_dump() for s in scores])
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


def plan(store: Store, run_id: str, lineup: Lineup) -> dict[str, list[Job]]:
    """Every call of the run that has no stored success, per endpoint."""
    done = store.succeeded_call_ids(run_id)
    items: dict[str, list[Item]] = {}
    for row in store.items(run_id):
        items.setdefault(row["suite"], []).append(Item.from_stored(row))
    out: dict[str, list[Job]] = {}
    for ep in lineup.endpoints:
        jobs = []
        for suite in lineup.run.suites:
            for it in items.get(suite, []):
                if not fits(ep, it):
                    continue
                for r in range(lineup.run.repeats):
                    cid = call_id(run_id, ep.name, suite, it.id, r)
                    if cid not in done:
                        jobs.append(Job(cid, suite, it, r))
        out[ep.name] = jobs
    return out


def planned_calls(
    store: Store, run_id: str, lineup: Lineup, endpoint: str, items: list[Item] | None = None
) -> int:
    """Suite calls planned for an endpoint: every item that fits its claimed context, × repeats.
    `items`: the run's suite items, when the caller has them already."""
    ep = lineup.endpoint(endpoint)
    if items is None:
        items = suite_items_of_run(store, run_id, lineup)
    return sum(fits(ep, it) for it in items) * lineup.run.repeats


def suite_items_of_run(store: Store, run_id: str, lineup: Lineup) -> list[Item]:
    return [Item.from_stored(r) for r in store.items(run_id) if r["suite"] in lineup.run.suites]


class EndpointSession:
    """The endpoints of a run, started (servers, proxies, clients) and ready to take jobs."""

    def __init__(self, store: Store, run_id: str, lineup: Lineup, opts: RunOptions) -> None:
        self.store, self.run_id, self.lineup, self.opts = store, run_id, lineup, opts
        self.keys = api_keys(lineup, opts.environ)
        store.add_secrets(k for k in self.keys.values() if k)
        self.runners: dict[str, _EndpointRunner] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EndpointSession:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector)
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
