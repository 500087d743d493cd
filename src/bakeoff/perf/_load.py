"""The load generator: closed loop (fixed concurrency) and open loop (a rate on an absolute schedule).

One level runs in this process, or sharded over several client processes (`processes > 1`) when
one core is not enough: each shard takes every n-th slot of the same schedule (open loop) or its
share of the concurrency (closed loop), against the same absolute start time. Every request becomes
a record; requests sent during the warmup or the cooldown are stored but not measured. Each shard
watches itself: the share of sends that went out more than 5 ms after their intended time (open
loop) or event-loop lag (closed loop), and its own CPU use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp

from bakeoff.endpoints import (
    CallError,
    CallRequest,
    CallResult,
    ClientOptions,
    EndpointClient,
    Timeouts,
    open_session,
)
from bakeoff.perf._types import LevelRun, NodeCheck, PerfRecord, SelfCheck, ShardResult

if TYPE_CHECKING:
    from bakeoff.perf._ray import RayPool
    from bakeoff.proxy import GGUFTokenizer

LATE_MS = 5.0
"""A send this much later than intended counts as late."""
MAX_LATE_SHARE = 0.01
MAX_CPU = 0.80


@dataclass(frozen=True)
class Target:
    """Where to send: an endpoint as started for the run (resolved URL, key from the environment)."""

    name: str
    base_url: str
    model: str
    api: str = "chat"
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, object] = field(default_factory=dict)
    """Fields added to every request body as they go on the wire."""
    stream_usage: bool = True
    timeouts: dict[str, float] = field(default_factory=dict)
    tokenizer: str | None = None
    """A GGUF file whose vocabulary counts output tokens when the endpoint reports no usage (the
    local lineup's own model files)."""


@functools.cache
def _tokenizer(path: str) -> GGUFTokenizer:
    from bakeoff.proxy import GGUFTokenizer

    return GGUFTokenizer(Path(path))


@dataclass(frozen=True)
class LevelSpec:
    mode: Literal["closed", "open"]
    value: float
    """Concurrency (closed) or requests per second (open)."""
    duration_s: float
    max_requests: int | None
    warmup_s: float
    cooldown_s: float
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = 0

    @property
    def label(self) -> str:
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"c={v}" if self.mode == "closed" else f"r={v}"


def schedule(spec: LevelSpec) -> list[float]:
    """Intended send times (s from the level's start) of an open-loop level."""
    n_max = spec.max_requests or math.inf
    if spec.arrival == "constant":
        n = math.ceil(spec.duration_s * spec.value - 1e-9)
        return [i / spec.value for i in range(int(min(n, n_max)))]
    out: list[float] = []
    t = 0.0
    rng = random.Random(spec.seed)
    while t < spec.duration_s and len(out) < n_max:
        out.append(t)
        t += rng.expovariate(spec.value)
    return out


def _phase(at: float, spec: LevelSpec) -> Literal["warmup", "measure", "cooldown"]:
    if at < spec.warmup_s:
        return "warmup"
    if at >= spec.duration_s - spec.cooldown_s:
        return "cooldown"
    return "measure"


def _record(
    seq: int,
    req_sent_ns: int | None,
    t0_ns: int,
    intended_s: float | None,
    result: CallResult | None,
    error: CallError | None,
    spec: LevelSpec,
    tokenizer: str | None = None,
) -> PerfRecord:
    sent_rel = ((req_sent_ns or t0_ns) - t0_ns) / 1e9
    at = intended_s if intended_s is not None else sent_rel
    rec: PerfRecord = {
        "seq": seq,
        "phase": _phase(at, spec),
        "intended_ms": None if intended_s is None else intended_s * 1000,
        "lateness_ms": None if intended_s is None else (sent_rel - intended_s) * 1000,
        "sent_s": sent_rel,
        "status": "ok" if error is None else "error",
        "error_class": None if error is None else str(error.error_class),
        "first_byte_ms": None,
        "role_ms": None,
        "ttft_ms": None,
        "last_token_ms": None,
        "e2e_ms": None,
        "chunks": [],
        "prompt_tokens": None,
        "completion_tokens": None,
        "token_source": None,
        "usage_tokens": None,
        "counted_tokens": None,
        "end_s": sent_rel,
    }
    if result is None:
        return rec
    t = result.timings
    # the client's own count: a tokenizer on the joined text when we have the model's, else the
    # token-bearing chunks
    if tokenizer is not None:
        counted = len(_tokenizer(tokenizer).encode(result.text + (result.reasoning or "")))
        source = "tokenizer"
    else:
        counted, source = len(t.token_chunk_ms), "chunks"
    usage = result.completion_tokens if result.usage_source == "usage" else None
    rec["first_byte_ms"] = t.first_byte_ms
    rec["role_ms"] = t.role_ms
    rec["ttft_ms"] = t.first_token_ms
    rec["last_token_ms"] = t.last_token_ms
    rec["e2e_ms"] = t.end_ms
    rec["chunks"] = list(t.token_chunk_ms)
    rec["prompt_tokens"] = result.prompt_tokens
    rec["completion_tokens"] = result.completion_tokens if usage is not None else counted
    rec["token_source"] = "usage" if usage is not None else source
    rec["usage_tokens"] = usage
    rec["counted_tokens"] = counted
    rec["end_s"] = sent_rel + (t.end_ms or 0) / 1000
    return rec


WARM_S = 0.02
"""The last stretch before a send is waited in 1 ms steps: after a long idle sleep a virtual
machine's CPU wakes several ms late (measured: 3-8 ms after a 1 s wait in a Ray actor on the
2-core dev VM), a process kept awake by short sleeps does not."""


async def _until(t_ns: int) -> None:
    """Sleep until `t_ns` (perf_counter_ns): coarsely, then in short steps for the last `WARM_S`."""
    while True:
        left = (t_ns - time.perf_counter_ns()) / 1e9
        if left <= 0:
            return
        await asyncio.sleep(left - WARM_S if left > 2 * WARM_S else min(left, 0.001))


async def _lag_monitor(samples: list[float], stop: asyncio.Event) -> None:
    """Event-loop lag: how late a 10 ms sleep wakes up."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append((time.perf_counter() - t - 0.01) * 1000)


def _client(session: aiohttp.ClientSession, target: Target) -> EndpointClient:
    return EndpointClient(
        session,
        base_url=target.base_url,
        model=target.model,
        api_key=target.api_key,
        options=ClientOptions(
            headers=target.headers,
            extra_body=target.extra_body,
            stream_usage=target.stream_usage,
            timeouts=Timeouts(**target.timeouts),
        ),
    )


def _closed_share(spec: LevelSpec, shard: int, shards: int) -> tuple[int, int | None]:
    """A closed-loop shard's workers (every `shards`-th of the level's concurrency) and its part of
    the level's request budget: the budget shared out over all workers, summed over its own."""
    total = int(spec.value)
    workers = range(shard, total, shards)
    if spec.max_requests is None:
        return len(workers), None
    whole, rest = divmod(spec.max_requests, max(total, 1))
    return len(workers), sum(whole + (w < rest) for w in workers)


async def run_shard(
    target: Target,
    spec: LevelSpec,
    requests: list[CallRequest],
    t0_ns: int,
    shard: int = 0,
    shards: int = 1,
    on_done: Callable[[], None] | None = None,
    sink: Callable[[PerfRecord], None] | None = None,
) -> ShardResult:
    """Run this shard's part of one level; return its records and self-check figures. With a
    `sink`, each record goes there as it completes instead (a remote shard streams them back)."""
    records: list[PerfRecord] = []
    keep = sink if sink is not None else records.append
    lag: list[float] = []
    stop = asyncio.Event()
    async with open_session(limit=0, cleanup_closed=True) as session:
        client = _client(session, target)

        n_sent = 0

        async def one(seq: int, intended_s: float | None) -> None:
            nonlocal n_sent
            n_sent += 1
            req = requests[seq % len(requests)]
            result: CallResult | None = None
            error: CallError | None = None
            sent: int | None = time.perf_counter_ns()
            try:
                result = await client.call(req)
                sent = result.timings.sent_ns or sent
            except CallError as e:
                error = e
            keep(_record(seq, sent, t0_ns, intended_s, result, error, spec, target.tokenizer))
            if on_done is not None:
                on_done()

        await _until(t0_ns)  # the common start
        start_late_ms = (time.perf_counter_ns() - t0_ns) / 1e6
        cpu0, wall0 = time.process_time(), time.perf_counter()
        monitor = asyncio.create_task(_lag_monitor(lag, stop))
        end_at = t0_ns + int(spec.duration_s * 1e9)
        if spec.mode == "closed":
            mine, budget = _closed_share(spec, shard, shards)
            counter = iter(range(shard, 10**12, shards))

            async def worker() -> None:
                nonlocal budget
                while time.perf_counter_ns() < end_at:
                    if budget is not None:
                        if budget <= 0:
                            return
                        budget -= 1
                    await one(next(counter), None)

            await asyncio.gather(*(worker() for _ in range(mine)))
        else:
            loop = asyncio.get_running_loop()
            tasks = []
            for seq, at in enumerate(schedule(spec)):
                if seq % shards != shard:
                    continue
                await _until(t0_ns + int(at * 1e9))
                tasks.append(loop.create_task(one(seq, at)))
            await asyncio.gather(*tasks)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        cpu = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        if n_sent == 0:
            cpu = 0.0  # a shard with nothing to send (concurrency below the shards): over at once
    return {"records": records, "cpu": cpu, "lag_ms": lag, "start_late_ms": start_late_ms}


def _shard_main(
    args: tuple[Target, LevelSpec, list[CallRequest], int, int, int],
) -> ShardResult:
    target, spec, requests, t0_ns, shard, shards = args
    return asyncio.run(run_shard(target, spec, requests, t0_ns, shard, shards))


async def run_level(
    target: Target,
    spec: LevelSpec,
    requests: list[CallRequest],
    processes: int = 1,
    on_done: Callable[[], None] | None = None,
    pool: RayPool | None = None,
) -> LevelRun:
    """Run one load level (in this process, sharded over local processes, or over the nodes of a
    Ray cluster when given its `pool`); merge the shards' records and checks."""
    parts: list[ShardResult]
    if pool is not None:
        parts = await pool.run_level(target, spec, requests, on_done)
    elif processes <= 1:
        t0 = time.perf_counter_ns() + 20_000_000
        parts = [await run_shard(target, spec, requests, t0, 0, 1, on_done)]
    else:
        # spawned shards need time to import; all start together at t0 (CLOCK_MONOTONIC is shared)
        t0 = time.perf_counter_ns() + 3_000_000_000
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as executor:
            loop = asyncio.get_running_loop()
            futs = [
                loop.run_in_executor(
                    executor,
                    _shard_main,
                    (target, spec, requests, t0, k, processes),
                )
                for k in range(processes)
            ]
            parts = list(await asyncio.gather(*futs))
    records = sorted((r for p in parts for r in p["records"]), key=lambda r: r["seq"])
    return {"records": records, "self_check": self_check(spec, records, parts)}


def _kept_up(spec: LevelSpec, records: list[PerfRecord], lag: list[float]) -> tuple[float, str]:
    """The share of late sends (open loop) or of lagging loop checks (closed), and what it means."""
    if spec.mode == "open":
        late = [r["lateness_ms"] for r in records if r["lateness_ms"] is not None]
        share = sum(1 for x in late if x > LATE_MS) / len(late) if late else 0.0
        return share, f"{share:.1%} of sends went out more than {LATE_MS:g} ms late"
    share = sum(1 for x in lag if x > LATE_MS) / len(lag) if lag else 0.0
    return (
        share,
        f"the client's event loop lagged more than {LATE_MS:g} ms in {share:.1%} of checks",
    )


def _node_checks(spec: LevelSpec, parts: list[ShardResult]) -> list[NodeCheck]:
    """Per node of a Ray cluster, its shards' own self-check: whether that generator kept up."""
    nodes: dict[str, list[ShardResult]] = {}
    for p in parts:
        nodes.setdefault(p.get("node", ""), []).append(p)
    out: list[NodeCheck] = []
    for node, ps in nodes.items():
        recs = [r for p in ps for r in p["records"]]
        share, late_why = _kept_up(spec, recs, [x for p in ps for x in p["lag_ms"]])
        cpu = max(p["cpu"] for p in ps)
        unc = max(p.get("clock_uncertainty_ms", 0.0) for p in ps)
        why = []
        if share > MAX_LATE_SHARE:
            why.append(late_why)
        if cpu > MAX_CPU:
            why.append(f"client CPU at {cpu:.0%} of a core (limit {MAX_CPU:.0%})")
        late_start = max(p["start_late_ms"] for p in ps)
        if late_start > LATE_MS:
            why.append(f"it started {late_start:.1f} ms after the common start")
        if spec.mode == "open" and unc > LATE_MS:
            why.append(
                f"its clock is known to within {unc:.1f} ms only (limit {LATE_MS:g} ms): "
                "the shared start time does not hold"
            )
        out.append(
            {
                "node": node,
                "address": ps[0].get("address", ""),
                "shards": [p.get("shard", 0) for p in ps],
                "requests": len(recs),
                "errors": sum(1 for r in recs if r["status"] != "ok"),
                "late_share": round(share, 4),
                "client_cpu": round(cpu, 3),
                "start_late_ms": round(late_start, 3),
                "clock_offset_ms": round(ps[0].get("clock_offset_ms", 0.0), 3),
                "clock_uncertainty_ms": round(unc, 3),
                "valid": not why,
                "why": why,
            }
        )
    return out


def self_check(spec: LevelSpec, records: list[PerfRecord], parts: list[ShardResult]) -> SelfCheck:
    """Whether the client kept up: late sends (open loop) or loop lag (closed), and CPU per shard;
    on a Ray cluster, also per node, and a node that fell behind invalidates the level by name."""
    why = []
    share, late_why = _kept_up(spec, records, [x for p in parts for x in p["lag_ms"]])
    if share > MAX_LATE_SHARE:
        why.append(late_why)
    cpu = max(p["cpu"] for p in parts)
    if cpu > MAX_CPU:
        why.append(
            f"client CPU at {cpu:.0%} of a core (limit {MAX_CPU:.0%}); "
            "use more client processes (--processes)"
        )
    out: SelfCheck = {
        "valid": True,
        "why": why,
        "late_share": round(share, 4),
        "client_cpu": round(cpu, 3),
        "processes": len(parts),
    }
    if parts and "node" in parts[0]:
        nodes = out["nodes"] = _node_checks(spec, parts)
        why.extend(f"node {n['address']}: {w}" for n in nodes for w in n["why"])
    out["valid"] = not why
    return out
