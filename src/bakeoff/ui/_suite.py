"""A suite's items as its page lists them, and as the item page walks them (previous / next).

Each item's cell per endpoint is its first repeat's call and primary score. An endpoint is compared
with the reference on its score as the summary counts it (a failed call scores 0): *worse* (a
regression: the reference passed or scored higher), *better* (an improvement), or the same; and on its
output text. The filters, the search and the orders below are applied server-side from the page's
query, so a filtered list is an address like any page (and the report holds the fixed ones)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, NotRequired, TypedDict

import orjson

from bakeoff.store import Row as StoreRow
from bakeoff.ui._data import NotFound, RunData
from bakeoff.ui._render import url

LISTING = ("show", "ep", "q", "sort")
"""A page's query parameters that choose the list (a `ListQuery`)."""

SHOWS = {
    "all": "all items",
    "disagree": "score differs from the reference",
    "differ": "output differs from the reference",
    "worse": "regressions",
    "better": "improvements",
}
"""The filters (`show=`); all but `all` compare with the reference, for one endpoint (`ep=`) or
any."""
SORTS = ("item", "disagree")
"""`sort=`: the suite's own item order, or the most endpoints whose score differs from the
reference's first."""


class Cell(TypedDict):
    """An endpoint's answer to an item: its first call and that call's primary score."""

    call: StoreRow
    score: StoreRow | None


class EndpointCounts(TypedDict):
    """How many items an endpoint does worse, better, differently on than the reference."""

    endpoint: str
    worse: int
    better: int
    disagree: int
    differ: int


class Neighbours(TypedDict):
    index: int
    total: int
    prev: str | None
    next: str | None
    page: NotRequired[int | None]
    """The suite page that lists it (None in a report: one page)."""


@dataclass
class Row:
    """One item of the list: its cells per endpoint and how each endpoint compares."""

    item: Any
    cells: dict[str, Cell]
    prompt: str
    """The excerpt shown: the last message the user wrote."""
    haystack: str
    """What the search looks in: the item id and every message, lower-cased."""
    score_vs: dict[str, int | None]
    """Per endpoint but the reference: -1 scored below the reference, 1 above, 0 the same, None
    not comparable (a cell missing or unscored)."""
    output_differs: dict[str, bool]

    @property
    def n_disagree(self) -> int:
        return sum(1 for v in self.score_vs.values() if v)


@dataclass(frozen=True)
class ListQuery:
    """Which items the list shows, in which order: the suite page's query (`show`, `ep`, `q`,
    `sort`), carried by its item links so the item page's previous / next walk the same list."""

    show: str = "all"
    ep: str = ""
    q: str = ""
    sort: str = "item"

    @classmethod
    def of(cls, query: dict[str, str]) -> ListQuery:
        """From a page's query as given (see `checked`)."""
        return cls(
            query.get("show", "all"),
            query.get("ep", ""),
            query.get("q", ""),
            query.get("sort", "item"),
        )

    def checked(self, rd: RunData) -> ListQuery:
        return ListQuery.parse(rd, self.show, self.ep, self.q, self.sort)

    @classmethod
    def parse(cls, rd: RunData, show: str, ep: str, q: str, sort: str) -> ListQuery:
        """Checked against the run: a clear NotFound for a filter, endpoint or order it lacks."""
        if show not in SHOWS:
            raise NotFound(f"show: one of {', '.join(SHOWS)}, not {show[:40]!r}")
        if sort not in SORTS:
            raise NotFound(f"sort: one of {', '.join(SORTS)}, not {sort[:40]!r}")
        ref = rd.lineup.reference
        if ep and (ep not in rd.endpoints or ep == ref):
            others = [e for e in rd.endpoints if e != ref]
            raise NotFound(f"ep: one of {', '.join(others)} (not the reference), not {ep[:40]!r}")
        return cls(show, ep, q.strip()[:200], sort)

    def params(self, **changes: Any) -> dict[str, str | None]:
        """The query for `url()`, defaults left out; `changes` override fields."""
        lq = replace(self, **changes)
        return {
            "show": None if lq.show == "all" else lq.show,
            "ep": (lq.ep or None) if lq.show != "all" else None,  # no filter: no endpoint to filter
            "q": lq.q or None,
            "sort": None if lq.sort == "item" else lq.sort,
        }

    @property
    def is_default(self) -> bool:
        return self == ListQuery()

    def keeps(self, row: Row) -> bool:
        if self.q and self.q.lower() not in row.haystack:
            return False
        if self.show == "all":
            return True
        eps = [self.ep] if self.ep else list(row.score_vs)
        if self.show == "differ":
            return any(row.output_differs.get(e) for e in eps)
        want = {"disagree": (-1, 1), "worse": (-1,), "better": (1,)}[self.show]
        return any(row.score_vs.get(e) in want for e in eps)

    def apply(self, rows: list[Row]) -> list[Row]:
        listed = [r for r in rows if self.keeps(r)]
        if self.sort == "disagree":
            listed.sort(key=lambda r: -r.n_disagree)  # stable: the item order within a count
        return listed


@dataclass(frozen=True)
class Links:
    """The addresses a suite page and an item page link to, keeping the list's query. A report holds
    item pages once each, so there an item link carries no query."""

    run_id: str
    suite: str
    lq: ListQuery
    report: bool

    def list(self, page: int | None = None, **changes: Any) -> str:
        """The suite page, its query changed by `changes` (show=, ep=, q=, sort=)."""
        return url(
            f"/run/{self.run_id}/suite",
            name=self.suite,
            page=page if page and page > 1 else None,
            **self.lq.params(**changes),
        )

    def item(self, item_id: str, **keep: str | None) -> str:
        """An item page; `keep`: its own parameters to carry (cols=, view=)."""
        query = {} if self.report else {**self.lq.params(), **keep}
        return url(f"/run/{self.run_id}/item", suite=self.suite, id=item_id, **query)


def suite_rows(rd: RunData, suite: str) -> list[Row]:
    """Every item of the suite with its cells and comparisons, in the suite's order (read once per
    RunData: the suite page and every item page of a report share them)."""
    if suite in rd._suite_rows:
        return rd._suite_rows[suite]
    scores = rd.primary_scores(suite)
    cells: dict[str, dict[str, Cell]] = defaultdict(dict)
    for call in rd.store.suite_calls(rd.run_id, suite):
        if call["repeat"] == 0:
            cells[call["item_id"]][call["endpoint"]] = {
                "call": call,
                "score": scores.get(call["id"]),
            }
    ref = rd.lineup.reference
    others = [e for e in rd.endpoints if e != ref] if ref else []
    rows = []
    for it in rd.store.items(rd.run_id, suite):
        c = cells.get(it["item_id"], {})
        r = c.get(ref) if ref else None
        inp = orjson.loads(it["input_json"])
        rows.append(
            Row(
                item=it,
                cells=c,
                prompt=prompt_excerpt(inp),
                haystack=(it["item_id"] + "\n" + _all_text(inp)).lower(),
                score_vs={e: _compare(c.get(e), r) for e in others},
                output_differs={e: _output_differs(c.get(e), r) for e in others},
            )
        )
    rd._suite_rows[suite] = rows
    return rows


def counts(rd: RunData, rows: list[Row]) -> list[EndpointCounts]:
    """Per endpoint but the reference: how many items it does worse, better, differently on."""
    out: list[EndpointCounts] = []
    for ep in rd.endpoints:
        if ep == rd.lineup.reference or not rd.lineup.reference:
            continue
        vs = [r.score_vs.get(ep) for r in rows]
        out.append(
            {
                "endpoint": ep,
                "worse": vs.count(-1),
                "better": vs.count(1),
                "disagree": vs.count(-1) + vs.count(1),
                "differ": sum(1 for r in rows if r.output_differs.get(ep)),
            }
        )
    return out


def value(cell: Cell | None) -> float | None:
    """A cell's score as the summary counts it: 0 for a failed call, 1/0 for pass/fail."""
    if cell is None:
        return None
    if cell["call"]["status"] != "ok":
        return 0.0
    s = cell["score"]
    if s is None:
        return None
    return float(bool(s["passed"])) if s["passed"] is not None else round(float(s["value"]), 3)


def _compare(cell: Cell | None, ref: Cell | None) -> int | None:
    a, b = value(cell), value(ref)
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


def _output_differs(cell: Cell | None, ref: Cell | None) -> bool:
    if cell is None or ref is None:
        return False
    return (cell["call"]["output_text"] or "") != (ref["call"]["output_text"] or "")


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else orjson.dumps(content).decode()


def _messages(inp: dict[str, object]) -> list[dict[str, object]]:
    """The messages of a stored request, as sent (those that are objects)."""
    msgs = inp.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def prompt_excerpt(inp: dict[str, object], n: int = 140) -> str:
    """The last message the user wrote (a tool conversation ends with the tool's result, which says
    little about the item), else the plain prompt, else the last message."""
    msgs = _messages(inp)
    users = [m for m in msgs if m.get("role") == "user"]
    if users:
        text = _text(users[-1].get("content"))
    else:
        text = _text(inp.get("prompt") or (msgs[-1].get("content") if msgs else ""))
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _all_text(inp: dict[str, object]) -> str:
    parts = [_text(m.get("content")) for m in _messages(inp)]
    return "\n".join([_text(inp.get("prompt")), *parts])


def neighbours(ids: list[str], item_id: str) -> Neighbours | None:
    """Where an item sits in a list of item ids: its position and the previous and next items; None
    when the list does not hold it."""
    if item_id not in ids:
        return None
    i = ids.index(item_id)
    return {
        "index": i,
        "total": len(ids),
        "prev": ids[i - 1] if i > 0 else None,
        "next": ids[i + 1] if i + 1 < len(ids) else None,
    }
