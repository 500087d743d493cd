"""`bakeoff perf`: sweep load levels over endpoints of a lineup, store every request, summarise.

Endpoints are measured one after another (so they do not compete for this machine), each through the
levels in order. A closed-loop sweep stops at saturation: when doubling the concurrency raised the
request throughput by less than 10%, the previous level is the endpoint's capacity. An open-loop sweep
stops when the achieved rate falls below 90% of the offered one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from bakeoff.endpoints import CallRequest
from bakeoff.lineups import Lineup, purposes
from bakeoff.perf._load import LevelSpec, Target, run_level
from bakeoff.perf._metrics import SLO, level_metrics
from bakeoff.perf._types import (
    CurvePoint,
    Dist,
    EndpointSweep,
    LevelEntry,
    LevelMetrics,
    LevelRun,
    NodeCheck,
    NodeRates,
    PerfRecord,
    PerfSummary,
    Saturation,
)
from bakeoff.store import Store

if TYPE_CHECKING:
    from bakeoff.perf._ray import RayPool
    from bakeoff.runs import EndpointSession

if TYPE_CHECKING:
    from bakeoff.runs import EndpointSession

SATURATION_GAIN = 1.10


@dataclass
class PerfOptions:
    mode: Literal["closed", "open"] = "closed"
    levels: list[float] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    duration_s: float = 20.0
    max_requests: int | None = None
    warmup_s: float = 2.0
    cooldown_s: float = 1.0
    input_tokens: int = 128
    output_tokens: int = 128
    suite: str | None = None
    """Draw the prompts from this suite's items instead of the token presets."""
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    slo: SLO = field(default_factory=SLO)
    processes: int = 1
    """Client processes (load-generator shards) on this host, or per node with `ray`."""
    ray: str | None = None
    """A Ray cluster's address ("auto": the one on this host): place the shards on its nodes."""
    stop_at_saturation: bool = True
    endpoints: list[str] | None = None


def synthetic_requests(
    input_tokens: int, output_tokens: int, n: int, seed: int
) -> list[CallRequest]:
    """Prompts of about `input_tokens` tokens (generated prose, a distinct opening per request so no
    prefix cache serves them whole) asking for `output_tokens` tokens."""
    import random

    from bakeoff.suites.long_context import build_haystack

    out = []
    for i in range(n):
        r = random.Random(f"perf:{seed}:{i}")
        body = build_haystack(r, max(1, input_tokens - 24), [])
        prompt = f"Request {r.randint(10**6, 10**7)}. Continue this story at length.\n\n{body}"
        out.append(
            CallRequest(
                messages=[{"role": "user", "content": prompt}],
                params={"max_tokens": output_tokens, **purposes.GREEDY},
            )
        )
    return out


def suite_requests(lineup: Lineup, suite: str, n: int) -> list[CallRequest]:
    from bakeoff.runs import suite_items

    items = suite_items(lineup, suite)[:n] or []
    if not items:
        raise ValueError(f"suite {suite!r} has no items")
    return [it.request("chat", True, dict(purposes.GREEDY)) for it in items]


def _saturated(
    opts: PerfOptions, prev: LevelEntry | None, cur: LevelMetrics, level: float
) -> str | None:
    thr = cur.get("request_throughput") or 0.0
    if opts.mode == "open":
        if thr < 0.9 * level:
            return f"achieved {thr:.1f} req/s of {level:g} offered"
        return None
    if prev is None:
        return None
    pthr = prev["metrics"].get("request_throughput") or 0.0
    if pthr > 0 and thr < SATURATION_GAIN * pthr:
        return f"throughput {thr:.1f} req/s at concurrency {level:g} vs {pthr:.1f} at {prev['level']:g}"
    return None


def _window(spec: LevelSpec, measured: list[PerfRecord]) -> float:
    """Seconds over which the measured requests ran. Closed loop: from the end of the warmup (or the
    first send) to the last end. Open loop: from the first measured slot to the later of the last
    slot's end of period and the last completion — an endpoint that falls behind the schedule
    stretches the window, so its throughput shows below the offered rate."""
    if not measured:
        return 0.0
    end = max(r["end_s"] for r in measured)
    if spec.mode == "open":
        slots = [(r["intended_ms"] or 0.0) / 1000 for r in measured]
        return max(end, max(slots) + 1 / spec.value) - min(slots)
    start = min(r["sent_s"] for r in measured)
    return max(end - max(start, spec.warmup_s), 1e-9)


def _node_rates(
    spec: LevelSpec, measured: list[PerfRecord], checks: list[NodeCheck], slo: SLO
) -> list[NodeRates]:
    """Per node of a Ray cluster: its self-check and what its own shards measured. Rates are over
    the level's window, so the nodes' rates add up to the level's; a node that fell behind shows
    in its late sends and its latencies."""
    shards = sum(len(n["shards"]) for n in checks)
    window = _window(spec, measured)
    out: list[NodeRates] = []
    for n in checks:
        its = set(n["shards"])
        mine = [r for r in measured if r.get("shard") in its]
        m = level_metrics(mine, window, slo)
        out.append(
            {
                **n,
                "measured": m["requests"],
                "offered_rate": spec.value * len(n["shards"]) / shards
                if spec.mode == "open"
                else None,
                "request_throughput": m["request_throughput"],
                "output_tok_s": m["output_tok_s"],
                "ttft_p50_ms": _p50(m["ttft_ms"]),
            }
        )
    return out


def _p50(d: Dist | None) -> float | None:
    return None if d is None else d["p50"]


async def sweep_endpoint(
    store: Store,
    perf_id: str,
    target: Target,
    requests: list[CallRequest],
    opts: PerfOptions,
    on_level: Callable[[str, str, int], Callable[[], None]] | None = None,
    pool: RayPool | None = None,
) -> EndpointSweep:
    levels_out: list[LevelEntry] = []
    saturation: Saturation | None = None
    for i, level in enumerate(opts.levels):
        spec = LevelSpec(
            mode=opts.mode,
            value=level,
            duration_s=opts.duration_s,
            max_requests=opts.max_requests,
            warmup_s=opts.warmup_s,
            cooldown_s=opts.cooldown_s,
            arrival=opts.arrival,
            seed=opts.seed + i,
        )
        expected = opts.max_requests or (int(level * opts.duration_s) if opts.mode == "open" else 0)
        tick = on_level(target.name, spec.label, expected) if on_level else None
        res = await run_level(target, spec, requests, opts.processes, tick, pool)
        store.add_perf_requests(perf_id, target.name, spec.label, res["records"])
        entry = _level_entry(spec, opts, res)
        why = _saturated(opts, levels_out[-1] if levels_out else None, entry["metrics"], level)
        levels_out.append(entry)
        if why:
            capacity = (
                levels_out[-2]["level"] if opts.mode == "closed" and len(levels_out) > 1 else None
            )
            saturation = {"at": level, "capacity": capacity, "why": why}
            if opts.stop_at_saturation:
                break
    return {
        "levels": levels_out,
        "curve": [_curve_point(e) for e in levels_out],
        "saturation": saturation,
        "valid": all(e["self_check"]["valid"] for e in levels_out),
    }


def _level_entry(spec: LevelSpec, opts: PerfOptions, res: LevelRun) -> LevelEntry:
    """A level's figures over its measured requests, with its self-check (a Ray cluster's per-node
    checks kept once, beside what each node measured)."""
    measured = [r for r in res["records"] if r["phase"] == "measure"]
    metrics = level_metrics(
        measured,
        _window(spec, measured),
        opts.slo,
        asked_tokens=None if opts.suite else opts.output_tokens,
    )
    entry: LevelEntry = {
        "level": spec.value,
        "label": spec.label,
        "metrics": metrics,
        "self_check": res["self_check"],
        "all_requests": len(res["records"]),
    }
    if "nodes" in res["self_check"]:
        entry["nodes"] = _node_rates(spec, measured, res["self_check"].pop("nodes"), opts.slo)
    return entry


def _curve_point(e: LevelEntry) -> CurvePoint:
    return {
        "level": e["level"],
        "request_throughput": e["metrics"]["request_throughput"],
        "output_tok_s": e["metrics"]["output_tok_s"],
        "ttft_p50_ms": _p50(e["metrics"]["ttft_ms"]),
        "valid": e["self_check"]["valid"],
    }


def _gguf_of(session: EndpointSession, name: str) -> str | None:
    """The model file behind an endpoint of the local lineup (through proxies), if any."""
    handle = session.handle(name)
    seen = set()
    while handle.endpoint.proxy is not None and handle.endpoint.name not in seen:
        seen.add(handle.endpoint.name)
        handle = session.handle(handle.endpoint.proxy.target)
    path = getattr(handle.provider, "model_path", None)
    return str(path) if path else None


async def run_perf(
    store: Store,
    lineup: Lineup,
    opts: PerfOptions,
    run_id: str | None = None,
    on_level: Callable[[str, str, int], Callable[[], None]] | None = None,
) -> tuple[str, PerfSummary]:
    """Start the lineup's endpoints, sweep each chosen one, store everything; return (id, summary).
    With `opts.ray`, the load generators are placed on the cluster's nodes first: a cluster that
    cannot be joined raises `RayError` before anything is stored, a failure later (an endpoint
    the nodes cannot reach, a node lost) raises it with the levels done so far stored."""
    if opts.ray is None:
        return await _run_perf(store, lineup, opts, run_id, on_level, None)
    from bakeoff.perf._ray import RayPool

    pool = RayPool.connect(opts.ray, opts.processes)
    try:
        return await _run_perf(store, lineup, opts, run_id, on_level, pool)
    finally:
        pool.close()


async def _run_perf(
    store: Store,
    lineup: Lineup,
    opts: PerfOptions,
    run_id: str | None,
    on_level: Callable[[str, str, int], Callable[[], None]] | None,
    pool: RayPool | None,
) -> tuple[str, PerfSummary]:
    from bakeoff.runs import EndpointSession, RunOptions

    perf_id = "perf-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    config: dict[str, object] = {**asdict(opts), "slo": opts.slo.as_dict()}
    store.create_perf(perf_id, run_id, lineup.model_dump_json(), config)
    names = opts.endpoints or [ep.name for ep in lineup.endpoints]
    unknown = [n for n in names if n not in {ep.name for ep in lineup.endpoints}]
    if unknown:
        raise ValueError(f"no endpoint named {', '.join(unknown)} in the lineup")
    if opts.suite:
        requests = suite_requests(lineup, opts.suite, 1000)
    else:
        requests = synthetic_requests(opts.input_tokens, opts.output_tokens, 256, opts.seed)
    endpoints: dict[str, EndpointSweep] = {}
    status: Literal["complete", "interrupted"] = "interrupted"
    try:
        async with EndpointSession(store, perf_id, lineup, RunOptions()) as session:
            for name in names:
                handle = session.handles[name]
                c = handle.client
                ep = handle.endpoint
                target = Target(
                    name=name,
                    base_url=c.base_url,
                    model=c.model,
                    api=ep.api,
                    api_key=handle.api_key,
                    headers=dict(ep.headers),
                    extra_body=dict(c.extra_body),
                    stream_usage=ep.stream_usage,
                    timeouts=ep.timeouts.model_dump(),
                    tokenizer=_gguf_of(session, name),
                )
                endpoints[name] = await sweep_endpoint(
                    store, perf_id, target, requests, opts, on_level, pool
                )
        status = "complete"
    finally:
        summary: PerfSummary = {
            "perf_id": perf_id,
            "run_id": run_id,
            "config": config,
            "endpoints": endpoints,
            "status": status,
            "valid": all(e["valid"] for e in endpoints.values()),
        }
        if pool is not None:
            summary["generators"] = pool.info
            summary["skipped_nodes"] = pool.skipped
        store.finish_perf(perf_id, status, summary)
    return perf_id, summary
