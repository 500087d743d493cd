"""What the overview marks: the best cell of each column, the caveats of shaky numbers, and the
capability table in words. Computed from the run summary alone, so the page, the report and the
tests agree on it."""

from __future__ import annotations

from typing import Any, TypedDict

from bakeoff.runs import CAPABILITY_LABELS

FIDELITY_RANK = {"same": 2, "inconclusive": 1, "different": 0}
"""Better verdicts rank higher; only `same` can be the best of its column."""


def _extreme(values: dict[str, float | None], higher: bool) -> set[str]:
    """The names holding the best value (all of them on a tie); none when fewer than two have one
    (a column of one value has no winner) or when more than half share it."""
    known = {n: v for n, v in values.items() if v is not None}
    if len(known) < 2:
        return set()
    best = max(known.values()) if higher else min(known.values())
    winners = {n for n, v in known.items() if v == best}
    # when most tie (five endpoints at 0.0% errors), a mark on each of them says nothing
    return winners if 2 * len(winners) <= len(known) else set()


def best_cells(s: dict[str, Any]) -> dict[str, set[str]]:
    """{column: endpoints holding its best value}. Columns: each suite (highest score), `fidelity`
    (a `same` verdict, the reference aside), `error_rate` and `ttft` (lowest), `tok_s` (highest),
    `cost_per_correct` (lowest). A point estimate: the interval beside it says whether the lead is
    real."""
    eps = s["endpoints"]
    out: dict[str, set[str]] = {}
    for suite in s["suites"]:
        out["suite:" + suite] = _extreme(
            {e["name"]: e["suites"][suite]["score"] for e in eps}, higher=True
        )
    ranks = {
        e["name"]: float(FIDELITY_RANK[f["verdict"]])
        for e in eps
        if (f := e.get("fidelity")) and f["verdict"] in FIDELITY_RANK
    }
    out["fidelity"] = {n for n, r in ranks.items() if r == 2.0}
    out["error_rate"] = _extreme({e["name"]: e["error_rate"] for e in eps}, higher=False)
    out["ttft"] = _extreme({e["name"]: e["ttft_ms"]["p50"] for e in eps}, higher=False)
    out["tok_s"] = _extreme({e["name"]: e["output_tok_s"]["p50"] for e in eps}, higher=True)
    out["cost_per_correct"] = _extreme(
        {e["name"]: e.get("cost_per_correct") for e in eps}, higher=False
    )
    return out


def caveats(e: dict[str, Any]) -> dict[str, list[str]]:
    """Per column of one endpoint's row, the lines that say why its number may mislead."""
    out: dict[str, list[str]] = {"error_rate": [], "ttft": [], "cost": []}
    calls = e["calls"] or 0
    if e.get("retried"):
        out["error_rate"].append(
            f"{e['retried']} of {calls} calls retried ({100 * (e.get('retry_rate') or 0):.0f}%)"
        )
    if e.get("rate_limited"):
        out["error_rate"].append(f"{e['rate_limited']} attempts rate-limited (429)")
    first = (e.get("ttft_first_send_ms") or {}).get("p50")
    own = e["ttft_ms"]["p50"]
    if e.get("retried") and first is not None and own is not None and first > own:
        out["ttft"].append(f"{first:,.1f} ms from the first send (retries included)")
    if e.get("cached"):
        out["ttft"].append(f"{e['cached']} cached calls left out")
        out["cost"].append(f"{e['cached']} calls replayed from the cache: not billed")
    return out


class CapabilityLine(TypedDict):
    """A capability in words and its cell per endpoint."""

    key: str
    label: str
    values: dict[str, object]


def capability_rows(s: dict[str, Any]) -> list[CapabilityLine]:
    """The capability table transposed — a row per capability in words, a column per endpoint —
    so that five endpoints fit the screen where thirteen columns did not."""
    keys: list[str] = []
    for e in s["endpoints"]:
        for k in e.get("capabilities") or {}:
            if k not in keys:
                keys.append(k)
    return [
        {
            "key": k,
            "label": CAPABILITY_LABELS.get(k, k.replace("_", " ")),
            "values": {e["name"]: (e.get("capabilities") or {}).get(k) for e in s["endpoints"]},
        }
        for k in keys
    ]
