"""Which endpoints are worth choosing: the fronts of quality against cost and against speed.

A point is on a two-axis front when no other endpoint is at least as good on both axes and better on
one. Two axes, not three: with quality, speed and cost at once nearly every endpoint is on the front
(seen: all five of a run, one of them scoring 0.03), which answers nothing."""

from __future__ import annotations

from typing import Any


def _dominated(p: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    """`p` = (quality, goodness), both higher-better: some other point is ≥ on both, > on one."""
    return any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in others)


def front_of(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names whose (quality, goodness) no other point dominates, by quality (best first)."""
    vals = list(points.values())
    on = [n for n, p in points.items() if not _dominated(p, vals)]
    return sorted(on, key=lambda n: (-points[n][0], -points[n][1], n))


def pareto_front(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """Per endpoint its quality (mean suite score), speed (output tok/s p50) and the cost of its
    suite calls (the same workload on every endpoint, unlike the audit's; per 1,000 calls for the
    front), and two fronts:
    `fronts.cost` (quality high, cost low; only when every endpoint with a quality is priced) and
    `fronts.speed` (quality high, speed high). `front` is kept from schema 1: the three-axis one."""
    points: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        scores = [v["score"] for v in e["suites"].values() if v["score"] is not None]
        if not scores:
            continue
        cost = ((e.get("bill") or {}).get("by_purpose") or {}).get("suite")
        points[e["name"]] = {
            "quality": round(sum(scores) / len(scores), 4),
            "output_tok_s": e["output_tok_s"]["p50"],
            "cost_usd": cost,
            # per call, so that an endpoint that stopped early or was cut short is not cheaper
            # for having answered less
            "cost_per_1k_calls": round(cost / e["calls"] * 1000, 6)
            if cost is not None and e["calls"]
            else None,
            "cost_per_correct": e.get("cost_per_correct"),
        }
    priced = bool(points) and all(p["cost_per_1k_calls"] is not None for p in points.values())
    fast = {n: p for n, p in points.items() if p["output_tok_s"] is not None}
    fronts: dict[str, list[str]] = {
        "speed": front_of({n: (p["quality"], p["output_tok_s"]) for n, p in fast.items()})
    }
    if priced:
        fronts["cost"] = front_of(
            {n: (p["quality"], -p["cost_per_1k_calls"]) for n, p in points.items()}
        )
    three = {
        n: (p["quality"], p["output_tok_s"], -(p["cost_usd"] or 0.0) if priced else 0.0)
        for n, p in fast.items()
    }
    front3 = [
        n
        for n, p in three.items()
        if not any(
            all(x >= y for x, y in zip(o, p, strict=True)) and o != p for o in three.values()
        )
    ]
    return {
        "axes": ["quality", "output_tok_s", *(["cost_usd"] if priced else [])],
        "front": sorted(front3),
        "fronts": fronts,
        "points": {
            n: {k: v for k, v in p.items() if v is not None or k == "output_tok_s"}
            for n, p in points.items()
        },
    }
