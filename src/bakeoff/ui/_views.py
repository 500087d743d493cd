"""The pages: each view reads the store and renders a template to an HTML fragment.

One set of views serves both the web app (`bakeoff ui`) and the static report (`bakeoff report`):
a page is addressed by its canonical URL (`url()`); the report renders the same pages and keys them
by that URL. Views never write, except the arena's vote (a POST handled by the server)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import orjson
from jinja2 import Environment

from bakeoff.lineups import Lineup
from bakeoff.runs import lineup_of_run, summarize
from bakeoff.stats import holm, mcnemar_exact
from bakeoff.store import Store
from bakeoff.ui._charts import PALETTE, chunks_chart, front_charts, perf_charts, wealth_chart
from bakeoff.ui._overview import best_cells, capability_rows, caveats
from bakeoff.ui._render import make_env, url

PAGE_SIZE = 100


class NotFound(Exception):
    """No such page, run, item or call."""


@dataclass
class Page:
    title: str
    html: str
    run_id: str | None = None


@dataclass
class RunData:
    """What several pages of one run need, read once per request (or once per report)."""

    store: Store
    run_id: str

    @cached_property
    def row(self) -> Any:
        row = self.store.run(self.run_id)
        if row is None:
            raise NotFound(f"no run {self.run_id}")
        return row

    @cached_property
    def lineup(self) -> Lineup:
        self.row  # noqa: B018 - raises NotFound first
        return lineup_of_run(self.store, self.run_id)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return summarize(self.store, self.run_id)

    @cached_property
    def endpoints(self) -> list[str]:
        return [e.name for e in self.lineup.endpoints]

    @cached_property
    def colors(self) -> dict[str, str]:
        return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(self.endpoints)}

    @cached_property
    def verdicts(self) -> dict[str, Any]:
        return self.store.verdicts(self.run_id)

    @cached_property
    def suites(self) -> list[str]:
        return list(self.lineup.run.suites)

    def primary_scores(self, suite: str) -> dict[str, Any]:
        """{call id: first score row} for the calls of one suite."""
        rows = self.store.suite_scores(self.run_id, suite)
        out: dict[str, Any] = {}
        for r in rows:
            out.setdefault(r["call_id"], r)
        return out


@dataclass
class Views:
    """Renders pages. `report=True` leaves out what needs a server (voting, filters by form)."""

    store: Store
    report: bool = False
    env: Environment = field(default_factory=make_env)
    context: dict[str, Any] = field(default_factory=dict)
    """Extra template variables (the web app's form token)."""
    _runs: dict[str, RunData] = field(default_factory=dict)

    def run(self, run_id: str) -> RunData:
        if run_id not in self._runs:
            rd = RunData(self.store, run_id)
            rd.row  # noqa: B018 - NotFound now rather than in a template
            self._runs[run_id] = rd
        return self._runs[run_id]

    def _render(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(
            report=self.report, href=self._href, **self.context, **ctx
        )

    def _href(self, address: str) -> str:
        """A link to a page: the address itself, or in a report the in-file anchor."""
        return "#" + address if self.report else address

    # -- dispatch --------------------------------------------------------------------------------
    ROUTES = (
        (re.compile(r"^/$"), "index"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)$"), "overview"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)/suite$"), "suite"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)/item$"), "item"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)/call$"), "call"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)/audit$"), "audit"),
        (re.compile(r"^/run/(?P<run_id>[^/]+)/arena$"), "arena"),
        (re.compile(r"^/perf$"), "perf"),
        (re.compile(r"^/compare$"), "compare"),
    )

    def page(self, address: str) -> Page:
        """The page at a canonical address (`/run/X/item?id=...&suite=...`)."""
        path, _, qs = address.partition("?")
        query = dict(parse_qsl(qs))
        for rx, name in self.ROUTES:
            m = rx.match(path)
            if m:
                return getattr(self, name)(**m.groupdict(), **_only(query, name))
        raise NotFound(f"no page {path}")

    # -- pages -----------------------------------------------------------------------------------
    def index(self) -> Page:
        runs = self.store.runs(200)
        perf = []
        for r in self.store.perf_runs(100):
            s = orjson.loads(r["summary_json"]) if r["summary_json"] else {}
            perf.append({"row": r, "endpoints": list((s.get("endpoints") or {}).keys())})
        return Page("Runs", self._render("index.html", runs=runs, perf=perf))

    def overview(self, run_id: str) -> Page:
        rd = self.run(run_id)
        s = rd.summary
        return Page(
            f"Run {run_id}",
            self._render(
                "overview.html",
                rd=rd,
                s=s,
                run=rd.row,
                figs=front_charts(s["pareto"], rd.colors),
                best=best_cells(s),
                caveats={e["name"]: caveats(e) for e in s["endpoints"]},
                capabilities=capability_rows(s),
                perf_runs=self.store.perf_runs_of(run_id),
            ),
            run_id,
        )

    def suite(self, run_id: str, name: str, show: str = "all", page: str = "1") -> Page:
        rd = self.run(run_id)
        if name not in rd.suites:
            raise NotFound(f"no suite {name} in run {run_id}")
        rows = self.store.suite_calls(run_id, name)
        scores = rd.primary_scores(name)
        cells: dict[str, dict[str, Any]] = defaultdict(dict)
        for row in rows:
            if row["repeat"] == 0:
                cells[row["item_id"]][row["endpoint"]] = {
                    "call": row,
                    "score": scores.get(row["id"]),
                }
        ref = rd.lineup.reference
        items = self.store.items(run_id, name)
        listed = []
        for it in items:
            c = cells.get(it["item_id"], {})
            r = c.get(ref) if ref else None
            differs_score = differs_output = False
            if r is not None:
                for ep, v in c.items():
                    if ep == ref:
                        continue
                    if _outcome(v) != _outcome(r):
                        differs_score = True
                    if (v["call"]["output_text"] or "") != (r["call"]["output_text"] or ""):
                        differs_output = True
            if show == "disagree" and not differs_score:
                continue
            if show == "differ" and not differs_output:
                continue
            listed.append({"item": it, "cells": c, "prompt": _prompt_excerpt(it["input_json"])})
        n = len(listed)
        if self.report:
            pages, cur = 1, 1
        else:
            pages = max(1, -(-n // PAGE_SIZE))
            cur = min(max(1, int(page) if page.isdigit() else 1), pages)
            listed = listed[(cur - 1) * PAGE_SIZE : cur * PAGE_SIZE]
        return Page(
            f"{name} · {run_id}",
            self._render(
                "suite.html",
                rd=rd,
                suite=name,
                show=show,
                listed=listed,
                total=n,
                n_items=len(items),
                page=cur,
                pages=pages,
            ),
            run_id,
        )

    def item(self, run_id: str, suite: str, id: str) -> Page:
        rd = self.run(run_id)
        it = self.store.item(run_id, suite, id)
        if it is None:
            raise NotFound(f"no item {id} in suite {suite}")
        calls = self.store.item_calls(run_id, suite, id)
        scores: dict[str, list[Any]] = defaultdict(list)
        for s in self.store.call_scores([c["id"] for c in calls]):
            scores[s["call_id"]].append(s)
        ref = rd.lineup.reference
        ref_text = {c["repeat"]: c["output_text"] for c in calls if c["endpoint"] == ref}
        by_ep: dict[str, list[Any]] = defaultdict(list)
        for c in calls:
            by_ep[c["endpoint"]].append(c)
        columns = [
            {
                "endpoint": ep,
                "calls": [
                    {
                        "row": c,
                        "scores": scores.get(c["id"], []),
                        "tool_calls": orjson.loads(c["tool_calls_json"])
                        if c["tool_calls_json"]
                        else None,
                        "ref_text": ref_text.get(c["repeat"]) if ep != ref else None,
                    }
                    for c in by_ep[ep]
                ],
            }
            for ep in rd.endpoints
            if ep in by_ep
        ]
        inp = orjson.loads(it["input_json"])
        return Page(
            f"{id} · {suite}",
            self._render(
                "item.html",
                rd=rd,
                suite=suite,
                item=it,
                messages=inp.get("messages") or [{"role": "prompt", "content": inp.get("prompt")}],
                params=inp.get("params") or {},
                tools=inp.get("tools"),
                target=it["target_json"],
                columns=columns,
                ref=ref,
            ),
            run_id,
        )

    def call(self, run_id: str, id: str) -> Page:
        rd = self.run(run_id)
        c = self.store.call(id)
        if c is None or c["run_id"] != run_id:
            raise NotFound(f"no call {id} in run {run_id}")
        attempts = self.store.attempts(id)
        scores = self.store.call_scores([id])
        chunks = orjson.loads(c["chunk_ms_json"]) if c["chunk_ms_json"] else []
        fig = chunks_chart(chunks, rd.colors.get(c["endpoint"]))
        return Page(
            f"call {id[:12]}",
            self._render(
                "call.html",
                rd=rd,
                c=c,
                attempts=attempts,
                scores=scores,
                chunks_fig=fig,
                n_chunks=len(chunks),
            ),
            run_id,
        )

    def audit(self, run_id: str) -> Page:
        rd = self.run(run_id)
        v = rd.verdicts
        figs = {ep: fig for ep, ev in v.items() if (fig := wealth_chart(ev)) is not None}
        return Page(
            f"Audit · {run_id}",
            self._render("audit.html", rd=rd, verdicts=v, figs=figs),
            run_id,
        )

    def arena(self, run_id: str, seed: str | None = None) -> Page:
        import random

        from bakeoff.arena import arena_summary, next_pair

        rd = self.run(run_id)
        pair = None
        if not self.report:
            pair = next_pair(self.store, run_id, random.Random(seed) if seed else None)
        summary = arena_summary(self.store, run_id, rd.lineup.reference)
        return Page(
            f"Arena · {run_id}",
            self._render("arena.html", rd=rd, pair=pair, a=summary),
            run_id,
        )

    def perf(self, id: str) -> Page:
        row = self.store.perf_run(id)
        if row is None:
            raise NotFound(f"no perf run {id}")
        s = orjson.loads(row["summary_json"]) if row["summary_json"] else {"endpoints": {}}
        figs, level_name = perf_charts(s, self.store.perf_measurements(id))
        return Page(
            f"Perf {id}",
            self._render("perf.html", row=row, s=s, figs=figs, level_name=level_name),
            row["run_id"],
        )

    def compare(self, a: str = "", b: str = "") -> Page:
        runs = self.store.runs(200)
        result = None
        if a and b:
            result = compare_runs(self.store, a, b)
        return Page(
            "Compare runs", self._render("compare.html", runs=runs, a=a, b=b, result=result)
        )


def _only(query: dict[str, str], view: str) -> dict[str, str]:
    allowed = {
        "suite": {"name", "show", "page"},
        "item": {"suite", "id"},
        "call": {"id"},
        "arena": {"seed"},
        "perf": {"id"},
        "compare": {"a", "b"},
    }.get(view, set())
    out = {k: v for k, v in query.items() if k in allowed}
    required = {"suite": {"name"}, "item": {"suite", "id"}, "call": {"id"}, "perf": {"id"}}
    missing = required.get(view, set()) - set(out)
    if missing:
        raise NotFound(f"missing {', '.join(sorted(missing))}")
    return out


def _outcome(cell: dict[str, Any]) -> Any:
    if cell["call"]["status"] != "ok":
        return "error"
    s = cell["score"]
    if s is None:
        return None
    return bool(s["passed"]) if s["passed"] is not None else round(s["value"], 3)


def _prompt_excerpt(input_json: str, n: int = 140) -> str:
    inp = orjson.loads(input_json)
    msgs = inp.get("messages") or []
    text = (msgs[-1].get("content") if msgs else inp.get("prompt")) or ""
    if not isinstance(text, str):
        text = orjson.dumps(text).decode()
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


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
    Holm-adjusted over the table."""
    ra, rb = store.find_run(a), store.find_run(b)
    if ra is None or rb is None:
        raise NotFound(f"no run {a if ra is None else b}")
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
    va, vb = store.verdicts(ra["id"]), store.verdicts(rb["id"])
    fid = [
        {"endpoint": n, "a": va.get(n), "b": vb.get(n)}
        for n in sorted(set(va) | set(vb), key=lambda n: _pos(order_a, n))
    ]
    return {"a": ra, "b": rb, "rows": rows, "fidelity": fid}


def _pos(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


__all__ = ["NotFound", "Page", "Views", "compare_runs", "url"]
