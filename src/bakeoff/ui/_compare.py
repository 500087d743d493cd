"""Before / after: two runs compared per endpoint (matched by name) and suite — the compare page, and
`bakeoff compare` on the command line."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypedDict

import orjson

from bakeoff.runs import lineup_of_run, summarize
from bakeoff.stats import holm, mcnemar_exact
from bakeoff.store import Store
from bakeoff.ui._data import find_run


class SameRun(ValueError):
    """Before and after are one run: there is nothing to compare."""


def _outcomes_of_run(store: Store, run_id: str) -> dict[tuple[str, str, str, int], float]:
    """{(endpoint, suite, item, repeat): primary score} for the suite calls of a run (a failed call
    scores 0, as in the summary)."""
    first: dict[str, tuple[float, Any]] = {}
    for s in store.scores(run_id, light=True):
        first.setdefault(s["call_id"], (s["value"], s["passed"]))
    out = {}
    for cid, ep, suite, item, rep, status in store.suite_outcomes(run_id):
        if status != "ok":
            out[(ep, suite, item, rep)] = 0.0
        elif cid in first:
            value, passed = first[cid]
            out[(ep, suite, item, rep)] = float(passed) if passed is not None else float(value)
    return out


def compare_runs(store: Store, a: str, b: str) -> dict[str, Any]:
    """Before/after: per endpoint (by name) and suite, both mean scores, Δ, and an exact McNemar
    test on the pass/fail outcomes of the items both runs asked (same seed → same items),
    Holm-adjusted over the table. `a` and `b`: ids, unique prefixes or `last`; SameRun when they
    name one run."""
    ra, rb = find_run(store, a), find_run(store, b)
    if ra["id"] == rb["id"]:
        raise SameRun(
            f"before and after are the same run ({ra['id']}): pick two different runs to compare"
        )
    oa, ob = _outcomes_of_run(store, ra["id"]), _outcomes_of_run(store, rb["id"])

    def grouped(o: dict[tuple[str, str, str, int], float]) -> dict[tuple[str, str], list[Any]]:
        g: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for k in o:
            g[(k[0], k[1])].append(k)
        return g

    ga, gb = grouped(oa), grouped(ob)
    order_a = [e.name for e in lineup_of_run(store, ra["id"]).endpoints]
    rows: list[dict[str, Any]] = []
    for key in sorted(set(ga) & set(gb), key=lambda k: (_pos(order_a, k[0]), k[1])):
        xa = [oa[k] for k in ga[key]]
        xb = [ob[k] for k in gb[key]]
        both = [k for k in ga[key] if k in ob]
        p = None
        if both and all(oa[k] in (0.0, 1.0) and ob[k] in (0.0, 1.0) for k in both):
            p, _, _ = mcnemar_exact([oa[k] == 1.0 for k in both], [ob[k] == 1.0 for k in both])
        sa, sb = sum(xa) / len(xa), sum(xb) / len(xb)
        rows.append(
            {
                "endpoint": key[0],
                "suite": key[1],
                "a": {"score": round(sa, 4), "n": len(xa)},
                "b": {"score": round(sb, 4), "n": len(xb)},
                "delta": round(sb - sa, 4),
                "paired": len(both),
                "p_value": p,
            }
        )
    for r, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        r["p_holm"] = adj
        r["significant"] = adj is not None and adj < 0.05
    va, vb = ({k: v.to_json() for k, v in store.verdicts(r["id"]).items()} for r in (ra, rb))
    fid = [
        {"endpoint": n, "a": va.get(n), "b": vb.get(n)}
        for n in sorted(set(va) | set(vb), key=lambda n: _pos(order_a, n))
    ]
    return {"a": ra, "b": rb, "rows": rows, "fidelity": fid}


def _pos(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


SPEED = (
    ("ttft", "TTFT p50", "ms", lambda e: (e.get("ttft_ms") or {}).get("p50")),
    ("tok_s", "output tok/s p50", "", lambda e: (e.get("output_tok_s") or {}).get("p50")),
    ("cost", "cost", "$", lambda e: e.get("cost_usd")),
)
"""The speed and cost columns: (key, heading, unit, read from a summary's endpoint)."""


def compare_matrix(store: Store, res: dict[str, Any], changed_only: bool) -> dict[str, Any]:
    """`compare_runs`' rows as the page shows them: rows endpoints, columns suites, each cell before
    → after; per endpoint both fidelity verdicts and the speed and cost of each run (its summary).
    `changed_only`: only the endpoints with a score or verdict that changed, and the suites where
    one did."""
    cells = {(r["endpoint"], r["suite"]): r for r in res["rows"]}
    sa, sb = (
        {e["name"]: e for e in summarize(store, res[k]["id"])["endpoints"]} for k in ("a", "b")
    )
    fid = {f["endpoint"]: f for f in res["fidelity"]}
    lineup = lineup_of_run(store, res["a"]["id"])
    order = [e.name for e in lineup.endpoints]
    names = {r["endpoint"] for r in res["rows"]} | (set(sa) & set(sb))
    endpoints = sorted(names, key=lambda n: (_pos(order, n), n))
    suites_a = list(lineup.run.suites)
    suites = [s for s in suites_a if any(k[1] == s for k in cells)]
    suites += sorted({k[1] for k in cells} - set(suites))

    def verdict(v: dict[str, Any] | None) -> str | None:
        return None if v is None else v.get("verdict")

    rows = []
    for ep in endpoints:
        # the summaries' verdicts: the audit's, and `reference` for the reference
        f = {
            k: (s.get(ep) or {}).get("fidelity") or fid.get(ep, {}).get(k)
            for k, s in (("a", sa), ("b", sb))
        }
        speed = {
            key: _delta(get(sa[ep]) if ep in sa else None, get(sb[ep]) if ep in sb else None)
            for key, _, _, get in SPEED
        }
        changed_suites = {s for s in suites if (cells.get((ep, s)) or {}).get("delta")}
        changed = bool(changed_suites) or verdict(f["a"]) != verdict(f["b"])
        rows.append(
            {
                "endpoint": ep,
                "cells": {s: cells.get((ep, s)) for s in suites},
                "fidelity": f,
                "speed": speed,
                "changed": changed,
                "changed_suites": changed_suites,
            }
        )
    if changed_only:
        rows = [r for r in rows if r["changed"]]
        suites = [s for s in suites if any(s in r["changed_suites"] for r in rows)]
    return {
        "endpoints": rows,
        "suites": suites,
        "speed_columns": [(k, h, u) for k, h, u, _ in SPEED],
        "only_a": sorted(set(sa) - set(sb)),
        "only_b": sorted(set(sb) - set(sa)),
    }


class Delta(TypedDict):
    a: float | None
    b: float | None
    delta: float | None
    rel: float | None
    """The change relative to `a`."""


def _delta(a: float | None, b: float | None) -> Delta:
    d = None if a is None or b is None else b - a
    rel = None if d is None or not a else d / a
    return {"a": a, "b": b, "delta": d, "rel": rel}


def run_label(row: Any) -> str:
    """A run as a person recognises it: a lineup has no name, so its id, when it was made, the
    lineup file and its endpoints."""
    names = [e.get("name", "?") for e in orjson.loads(row["lineup_json"]).get("endpoints") or []]
    eps = ", ".join(names[:4]) + (f" +{len(names) - 4}" if len(names) > 4 else "")
    source = (row["source"] or "").replace("\\", "/").rsplit("/", 1)[-1]
    created = (row["created_at"] or "").replace("T", " ")[:16]
    return " · ".join(x for x in (row["id"], created, source, eps) if x)
