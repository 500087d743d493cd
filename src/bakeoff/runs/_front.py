"""Which endpoints are worth choosing: the fronts of quality against cost and against speed.

A point is on a two-axis front when no other endpoint is at least as good on both axes and better on
one. Two axes, not three: with quality, speed and cost at once nearly every endpoint is on the front
(seen: all five of a run, one of them scoring 0.03), which answers nothing.

The fronts are drawn among the endpoints the fidelity audit did not find `different`: one serving
another model (a pirate's system prompt, a coarser quantization) is no choice however cheap or fast
it is; it keeps its point, marked, off the fronts. `picks` names the faithful endpoints (the
reference, and those found `same` without a significantly worse score) that are fastest and
cheapest."""

from __future__ import annotations

from typing import Any

from bakeoff.runs._results import EndpointSummary


def _dominated(p: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    """`p` = (quality, goodness), both higher-better: some other point is ≥ on both, > on one."""
    return any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in others)


def front_of(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names whose (quality, goodness) no other point dominates, by quality (best first)."""
    vals = list(points.values())
    on = [n for n, p in points.items() if not _dominated(p, vals)]
    return sorted(on, key=lambda n: (-points[n][0], -points[n][1], n))


def pareto_front(endpoints: list[EndpointSummary]) -> dict[str, Any]:
    """Per endpoint its quality (mean suite score), speed (output tok/s p50) and the cost of its
    suite calls (the same workload on every endpoint, unlike the audit's; per 1,000 calls for the
    front), and two fronts:
    `fronts.cost` (quality high, cost low; only when every endpoint with a quality is priced) and
    `fronts.speed` (quality high, speed high). `front` is kept from schema 1: the three-axis one."""
    points: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, str | None] = {}
    for e in endpoints:
        scores = [v.score for v in e.suites.values() if v.score is not None]
        if not scores:
            continue
        cost = e.bill.by_purpose.get("suite") if e.bill is not None else None
        verdict = e.fidelity.verdict if e.fidelity is not None else None
        verdicts[e.name] = verdict
        if verdict == "same" and _worse(e):
            verdicts[e.name] = "same, but scores worse"  # no pick: see `_picks`
        points[e.name] = {
            "quality": round(sum(scores) / len(scores), 4),
            "fidelity": verdict,
            "output_tok_s": e.output_tok_s.p50,
            "cost_usd": cost,
            # per call, so that an endpoint that stopped early or was cut short is not cheaper
            # for having answered less
            "cost_per_1k_calls": round(cost / e.calls * 1000, 6)
            if cost is not None and e.calls
            else None,
            "cost_per_correct": e.cost_per_correct,
        }
    rejected = sorted(n for n, v in verdicts.items() if v == "different")
    priced = bool(points) and all(p["cost_per_1k_calls"] is not None for p in points.values())
    candidates = {n: p for n, p in points.items() if n not in rejected}
    fast = {n: p for n, p in candidates.items() if p["output_tok_s"] is not None}
    fronts: dict[str, list[str]] = {
        "speed": front_of({n: (p["quality"], p["output_tok_s"]) for n, p in fast.items()})
    }
    if priced:
        fronts["cost"] = front_of(
            {n: (p["quality"], -p["cost_per_1k_calls"]) for n, p in candidates.items()}
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
        "rejected": rejected,
        "picks": _picks(points, verdicts, priced),
        "points": {
            n: {k: v for k, v in p.items() if v is not None or k == "output_tok_s"}
            for n, p in points.items()
        },
    }


def _worse(e: EndpointSummary) -> bool:
    """Whether a suite scores significantly below the reference's on the same items."""
    return any(
        (v := s.vs_reference) is not None and v.significant and (v.delta or 0) < 0
        for s in e.suites.values()
    )


def _picks(
    points: dict[str, dict[str, Any]], verdicts: dict[str, str | None], priced: bool
) -> dict[str, str | None]:
    """Among the faithful endpoints (the reference, and those the audit found `same` that score no
    suite significantly below the reference's): the fastest (output tok/s p50) and, when every
    endpoint is priced, the cheapest (per 1,000 suite calls); None when the audit found none
    faithful (or did not run)."""
    faithful = {n: p for n, p in points.items() if verdicts.get(n) in ("reference", "same")}
    if not any(v == "same" for v in verdicts.values()):
        faithful = {}  # the reference alone is no choice between endpoints
    fast = {n: p["output_tok_s"] for n, p in faithful.items() if p["output_tok_s"] is not None}
    cheap = {n: p["cost_per_1k_calls"] for n, p in faithful.items() if priced}
    return {
        "fastest": max(fast, key=lambda n: (fast[n], n)) if fast else None,
        "cheapest": min(cheap, key=lambda n: (cheap[n], n)) if cheap else None,
    }
