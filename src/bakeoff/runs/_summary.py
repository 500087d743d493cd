"""The run summary, recomputed from the store (never from in-memory counters).

Denominators: a suite's score is passed / calls stored for it, so a failed call counts as a wrong
answer and is also counted under `errors`; nothing is dropped silently. Latency figures use successful
calls that went over the wire (not cache hits).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from bakeoff.lineups import Lineup
from bakeoff.runs._runner import lineup_of_run, total_calls
from bakeoff.stats import percentile, wilson_interval
from bakeoff.store import Store


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def _fidelity(v: dict[str, Any] | None, is_reference: bool) -> dict[str, Any] | None:
    if is_reference:
        return {"verdict": "reference"}
    if v is None:
        return None
    return {
        "verdict": v["verdict"],
        "p_value": v["p_value"],
        "calls": v["calls"],
        "tokens": v["tokens"],
        "why": v["why"],
        "flags": v["behaviour"].get("flags", []),
    }


def summarize(store: Store, run_id: str) -> dict[str, Any]:
    """A JSON-ready summary of a run: per endpoint, counts, errors by class, scores, speed, cost."""
    run = store.run(run_id)
    if run is None:
        raise KeyError(run_id)
    lineup: Lineup = lineup_of_run(store, run_id)
    calls = store.calls(run_id)
    score_rows = store.scores(run_id)
    by_call = {s["call_id"]: s for s in score_rows}
    planned_per_ep = total_calls(store, run_id, lineup) // max(len(lineup.endpoints), 1)

    per_ep: dict[str, list[Any]] = defaultdict(list)
    for c in calls:
        if not c["suite"].startswith("fidelity."):  # audit calls are summarised under `fidelity`
            per_ep[c["endpoint"]].append(c)

    verdicts = store.verdicts(run_id)
    endpoints = []
    for ep in lineup.endpoints:
        rows = per_ep.get(ep.name, [])
        ok = [c for c in rows if c["status"] == "ok"]
        errors = Counter(c["error_class"] for c in rows if c["status"] != "ok")
        live = [c for c in ok if not c["cached"]]
        ttft = [c["ttft_ms"] for c in live if c["ttft_ms"] is not None]
        tps = []
        for c in live:
            n, first, last = c["completion_tokens"], c["ttft_ms"], c["last_token_ms"]
            if n and n > 1 and first is not None and last is not None and last > first:
                tps.append((n - 1) / ((last - first) / 1000))
        suites: dict[str, Any] = {}
        for suite in lineup.run.suites:
            srows = [c for c in rows if c["suite"] == suite]
            n = len(srows)
            good = 0
            for c in srows:
                s = by_call.get(c["id"])
                hit = int(bool(s is not None and s["passed"]))
                good += hit
            lo, hi = wilson_interval(good, n)
            suites[suite] = {
                "score": _round(good / n if n else None, 4),
                "correct": good,
                "n": n,
                "ci95": [round(lo, 4), round(hi, 4)],
                "errors": sum(1 for c in srows if c["status"] != "ok"),
            }
        prompt_tokens = sum(c["prompt_tokens"] or 0 for c in live)
        completion_tokens = sum(c["completion_tokens"] or 0 for c in live)
        entry: dict[str, Any] = {
            "name": ep.name,
            "model": ep.model,
            "provider": ep.provider,
            "reference": ep.name == lineup.reference,
            "planned": planned_per_ep,
            "calls": len(rows),
            "successes": len(ok),
            "errors": dict(sorted(errors.items())),
            "error_rate": _round(sum(errors.values()) / len(rows) if rows else None, 4),
            "cached": sum(1 for c in rows if c["cached"]),
            "attempts": sum(c["n_attempts"] for c in rows),
            "suites": suites,
            "ttft_ms": {"p50": _round(percentile(ttft, 50)), "p90": _round(percentile(ttft, 90))},
            "output_tok_s": {"p50": _round(percentile(tps, 50), 1)},
            "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
            "usage_sources": dict(Counter(c["usage_source"] for c in ok)),
            "upstreams": dict(Counter(c["upstream"] for c in ok if c["upstream"])),
            "cost_usd": None,
            "fidelity": _fidelity(verdicts.get(ep.name), ep.name == lineup.reference),
        }
        if ep.price is not None:
            entry["cost_usd"] = round(
                prompt_tokens * ep.price.input_per_m / 1e6
                + completion_tokens * ep.price.output_per_m / 1e6,
                6,
            )
        endpoints.append(entry)
    return {
        "run_id": run_id,
        "status": run["status"],
        "created_at": run["created_at"],
        "finished_at": run["finished_at"],
        "reference": lineup.reference,
        "suites": list(lineup.run.suites),
        "repeats": lineup.run.repeats,
        "endpoints": endpoints,
    }
