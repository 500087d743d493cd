"""The pages: each view reads the store and renders a template to an HTML fragment.

One set of views serves both the web app (`bakeoff ui`) and the static report (`bakeoff report`):
a page is addressed by its canonical URL (`url()`); the report renders the same pages and keys them
by that URL. Views never write, except the arena's vote (a POST handled by the server)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import parse_qsl

import orjson
from jinja2 import Environment

from bakeoff.perf import PerfSummary
from bakeoff.runs import audit_costs
from bakeoff.store import Row, Store
from bakeoff.ui import _watch
from bakeoff.ui._charts import chunks_chart, front_charts, perf_charts, wealth_chart
from bakeoff.ui._compare import SameRun, compare_matrix, compare_runs, run_label
from bakeoff.ui._data import NotFound, Page, RunData, find_run
from bakeoff.ui._overview import best_cells, capability_rows, caveats
from bakeoff.ui._render import make_env, url
from bakeoff.ui._suite import (
    LISTING,
    SHOWS,
    Links,
    ListQuery,
    Neighbours,
    counts,
    neighbours,
    suite_rows,
)

PAGE_SIZE = 100


class ItemCall(TypedDict):
    row: Row
    scores: list[Row]
    tool_calls: list[object] | None
    """As the reply sent them."""
    ref_text: str | None
    """The reference's output of the same repeat (None in the reference's own column)."""


class ItemColumn(TypedDict):
    endpoint: str
    extra: bool
    """Not among the endpoints chosen: shown further right."""
    calls: list[ItemCall]


@dataclass
class Views:
    """Renders pages. `report=True` leaves out what needs a server (voting, filters by form)."""

    store: Store
    report: bool = False
    env: Environment = field(default_factory=make_env)
    context: dict[str, object] = field(default_factory=dict)
    """Extra template variables (the web app's form token)."""
    _runs: dict[str, RunData] = field(default_factory=dict)

    def run(self, ref: str) -> RunData:
        """A run by id, unique prefix or `last` (as the CLI takes them): its pages link to it by id."""
        if ref not in self._runs:
            row = find_run(self.store, ref)
            rd = self._runs.get(row["id"]) or RunData(self.store, row["id"])
            rd.__dict__["row"] = row
            self._runs[ref] = self._runs[row["id"]] = rd
        return self._runs[ref]

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
        (re.compile(r"^/watch$"), "watch"),
        (re.compile(r"^/watch/evidence$"), "watch_evidence"),
    )

    def page(self, address: str) -> Page:
        """The page at a canonical address (`/run/X/item?id=...&suite=...`)."""
        path, _, qs = address.partition("?")
        query: dict[str, str] = {}
        for k, v in parse_qsl(qs):  # a repeated key (a form's checkboxes): its values joined by ","
            query[k] = f"{query[k]},{v}" if k in query else v
        for rx, name in self.ROUTES:
            m = rx.match(path)
            if m:
                args: dict[str, object] = {**_only(query, name)}
                if name in ("suite", "item"):  # the list's parameters, as one
                    args = {k: v for k, v in args.items() if k not in LISTING}
                    args["listing"] = ListQuery.of(query)
                return getattr(self, name)(**m.groupdict(), **args)
        raise NotFound(f"no page {path}")

    # -- pages -----------------------------------------------------------------------------------
    def index(self) -> Page:
        runs = self.store.runs(200)
        perf = []
        for r in self.store.perf_runs(100):
            s = orjson.loads(r["summary_json"]) if r["summary_json"] else {}
            perf.append({"row": r, "endpoints": list((s.get("endpoints") or {}).keys())})
        watches = [] if self.report else self.store.watch_names()
        return Page("Runs", self._render("index.html", runs=runs, perf=perf, watches=watches))

    def overview(self, run_id: str) -> Page:
        rd = self.run(run_id)
        s = rd.summary
        return Page(
            f"Run {rd.run_id}",
            self._render(
                "overview.html",
                rd=rd,
                s=s,
                run=rd.row,
                figs=front_charts(s["pareto"], rd.colors),
                best=best_cells(s),
                caveats={e["name"]: caveats(e) for e in s["endpoints"]},
                capabilities=capability_rows(s),
                perf_runs=self.store.perf_runs_of(rd.run_id),
            ),
            rd.run_id,
        )

    def suite(
        self, run_id: str, name: str, listing: ListQuery | None = None, page: str = "1"
    ) -> Page:
        rd = self.run(run_id)
        if name not in rd.suites:
            raise NotFound(f"no suite {name} in run {rd.run_id}")
        lq = (listing or ListQuery()).checked(rd)
        rows = suite_rows(rd, name)
        listed = lq.apply(rows)
        n = len(listed)
        if self.report:
            pages, cur = 1, 1
        else:
            pages = max(1, -(-n // PAGE_SIZE))
            cur = min(max(1, int(page) if page.isdigit() else 1), pages)
            listed = listed[(cur - 1) * PAGE_SIZE : cur * PAGE_SIZE]
        return Page(
            f"{name} · {rd.run_id}",
            self._render(
                "suite.html",
                rd=rd,
                suite=name,
                lq=lq,
                links=Links(rd.run_id, name, lq, self.report),
                shows=SHOWS,
                listed=listed,
                total=n,
                n_items=len(rows),
                counts=counts(rd, rows),
                page=cur,
                pages=pages,
            ),
            rd.run_id,
        )

    def item(
        self,
        run_id: str,
        suite: str,
        id: str,
        cols: str = "",
        view: str = "diff",
        listing: ListQuery | None = None,
    ) -> Page:
        rd = self.run(run_id)
        it = self.store.item(rd.run_id, suite, id)
        if it is None:
            raise NotFound(f"no item {id} in suite {suite}")
        if view not in ("diff", "plain"):
            raise NotFound(f"view: diff or plain, not {view[:40]!r}")
        shown = _shown(rd, cols)
        lq = ListQuery() if self.report else (listing or ListQuery()).checked(rd)
        nav, lq = self._item_nav(rd, suite, id, lq)
        # what the links of this page keep: the endpoints chosen and the view (not in a report,
        # whose pages are rendered once per item)
        keep: dict[str, str | None] = {}
        if not self.report:
            keep = {
                "cols": ",".join(shown) if cols else None,
                "view": None if view == "diff" else view,
            }
        inp = orjson.loads(it["input_json"])
        params = dict(inp.get("params") or {})
        # the tools suite sends its tools as a body parameter: shown indented, not in that line
        tools = inp.get("tools") or params.pop("tools", None)
        return Page(
            f"{id} · {suite}",
            self._render(
                "item.html",
                rd=rd,
                suite=suite,
                item=it,
                messages=inp.get("messages") or [{"role": "prompt", "content": inp.get("prompt")}],
                params=params,
                tools=tools,
                target=it["target_json"],
                columns=self._item_columns(rd, suite, id, shown),
                ref=rd.lineup.reference,
                shown=shown,
                view=view,
                keep=keep,
                nav=nav,
                links=Links(rd.run_id, suite, lq, self.report),
            ),
            rd.run_id,
        )

    def _item_columns(
        self, rd: RunData, suite: str, item_id: str, shown: list[str]
    ) -> list[ItemColumn]:
        """One column per endpoint that has calls for the item: those chosen first (side by side),
        then the others (`extra`, further right)."""
        calls = self.store.item_calls(rd.run_id, suite, item_id)
        scores: dict[str, list[Any]] = defaultdict(list)
        for s in self.store.call_scores([c["id"] for c in calls]):
            scores[s["call_id"]].append(s)
        ref = rd.lineup.reference
        ref_text = {c["repeat"]: c["output_text"] for c in calls if c["endpoint"] == ref}
        by_ep: dict[str, list[Any]] = defaultdict(list)
        for c in calls:
            by_ep[c["endpoint"]].append(c)
        order = [e for e in shown if e in by_ep]
        order += [e for e in rd.endpoints if e in by_ep and e not in shown]
        return [
            {
                "endpoint": ep,
                "extra": ep not in shown,
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
            for ep in order
        ]

    def _item_nav(
        self, rd: RunData, suite: str, item_id: str, lq: ListQuery
    ) -> tuple[Neighbours | None, ListQuery]:
        """Previous / next in the suite page's list the item was opened from (its filter, search and
        order); the whole suite when that list no longer holds it. None for the audit's items (no
        suite page lists them)."""
        if suite not in rd.suites:
            return None, lq
        if lq.is_default:
            ids = rd.item_ids.get(suite, [])
        else:
            ids = [r.item["item_id"] for r in lq.apply(suite_rows(rd, suite))]
        nav = neighbours(ids, item_id)
        if nav is None and not lq.is_default:
            return self._item_nav(rd, suite, item_id, ListQuery())
        if nav is not None:
            nav["page"] = None if self.report else nav["index"] // PAGE_SIZE + 1
        return nav, lq

    def call(self, run_id: str, id: str) -> Page:
        rd = self.run(run_id)
        run_id = rd.run_id  # the id, also when the address gave a prefix or `last`
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
        run_id = rd.run_id  # the id, also when the address gave a prefix or `last`
        v = rd.verdicts
        figs = {ep: fig for ep, ev in v.items() if (fig := wealth_chart(ev)) is not None}
        costs = audit_costs(rd.store.calls_light(run_id), rd.store.side_calls(run_id))
        stop = rd.store.audit_stop(run_id)
        page = self._render("audit.html", rd=rd, verdicts=v, figs=figs, costs=costs, stop=stop)
        return Page(f"Audit · {run_id}", page, run_id)

    def arena(self, run_id: str, seed: str | None = None) -> Page:
        import random

        from bakeoff.arena import arena_summary, next_pair

        rd = self.run(run_id)
        run_id = rd.run_id  # the id, also when the address gave a prefix or `last`
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
        s: PerfSummary | None = orjson.loads(row["summary_json"]) if row["summary_json"] else None
        figs, level_name = perf_charts(s, self.store.perf_measurements(id))
        shown: Mapping[str, object] = s or {"endpoints": {}}  # a running sweep has none yet
        return Page(
            f"Perf {id}",
            self._render("perf.html", row=row, s=shown, figs=figs, level_name=level_name),
            row["run_id"],
        )

    def compare(self, a: str = "", b: str = "", changed: str = "") -> Page:
        runs = self.store.runs(200)
        if not a and not b and len(runs) >= 2:
            a, b = runs[1]["id"], runs[0]["id"]  # the newest run against the one before it
        result = matrix = error = None
        if a and b:
            try:
                result = compare_runs(self.store, a, b)
            except (SameRun, NotFound) as e:
                error = str(e)
            else:
                a, b = result["a"]["id"], result["b"]["id"]
                matrix = compare_matrix(self.store, result, changed_only=bool(changed))
        return Page(
            "Compare runs",
            self._render(
                "compare.html",
                runs=[(r["id"], run_label(r)) for r in runs],
                a=a,
                b=b,
                changed=bool(changed),
                result=result,
                m=matrix,
                error=error,
            ),
        )

    def watch(self, name: str = "") -> Page:
        """A watch's timeline per endpoint and its checks; without a name, the watches."""
        names = self.store.watch_names()
        if not name:
            return Page("Watches", self._render("watches.html", names=names))
        return Page(
            f"Watch {name}",
            self._render(
                "watch.html",
                name=name,
                watch=self.store.watch(name),
                settings=_watch.settings_of(self.store, name),
                history=_watch.watch_history(self.store, name),
                running=[c for c in self.store.watch_checks(name) if c.status == "running"],
                skipped=[c for c in self.store.watch_checks(name) if c.status == "skipped-cost"],
                evidence_url=_watch.evidence_url,
                when=_watch.when,
            ),
        )

    def watch_evidence(self, name: str, endpoint: str, check: str) -> Page:
        """The prompts of one check whose answers left the endpoint's baseline, before and after."""
        ev = _watch.evidence(self.store, name, endpoint, check)
        return Page(
            f"{endpoint} · check {ev.point.seq} · watch {name}",
            self._render("watch_evidence.html", ev=ev, suite=_watch.GREEDY),
        )


_QUERY = {
    "suite": ({"name", "show", "ep", "q", "sort", "page"}, {"name"}),
    "item": ({"suite", "id", "cols", "view", "show", "ep", "q", "sort"}, {"suite", "id"}),
    "call": ({"id"}, {"id"}),
    "arena": ({"seed"}, set()),
    "perf": ({"id"}, {"id"}),
    "compare": ({"a", "b", "changed"}, set()),
    "watch": ({"name"}, set()),
    "watch_evidence": ({"name", "endpoint", "check"}, {"name", "endpoint", "check"}),
}
"""Per view: the query parameters it takes, and those it needs."""


def _only(query: dict[str, str], view: str) -> dict[str, str]:
    allowed, required = _QUERY.get(view, (set(), set()))
    out = {k: v for k, v in query.items() if k in allowed}
    missing = required - set(out)
    if missing:
        raise NotFound(f"missing {', '.join(sorted(missing))}")
    return out


def _shown(rd: RunData, cols: str) -> list[str]:
    """The endpoints to show side by side: those named in `cols` (comma-separated), by default
    the reference and up to three others (more fit a wide screen only narrowly); the reference
    first."""
    ref = rd.lineup.reference
    if cols:
        names = [c for c in cols.split(",") if c]
        bad = [c for c in names if c not in rd.endpoints]
        if bad:
            raise NotFound(
                f"cols: no endpoint {bad[0][:40]!r} in run {rd.run_id} "
                f"(it has {', '.join(rd.endpoints)})"
            )
    else:
        names = ([ref] if ref else []) + [e for e in rd.endpoints if e != ref][: 3 if ref else 4]
    first = [ref] if ref in names else []
    return first + [e for e in rd.endpoints if e in names and e != ref]


__all__ = ["NotFound", "Page", "Views", "compare_runs", "url"]
