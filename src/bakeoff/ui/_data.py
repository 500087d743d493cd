"""What the views share: the page type, the not-found error, and `RunData`, what the pages of one run
read from the store, read once per request (or once per report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bakeoff.lineups import Lineup
from bakeoff.runs import lineup_of_run, summarize
from bakeoff.store import Row, Store
from bakeoff.ui._charts import PALETTE

if TYPE_CHECKING:
    from bakeoff.ui._suite import Row as ItemRow


class NotFound(Exception):
    """No such page, run, item or call (or a query the page cannot answer)."""


@dataclass
class Page:
    title: str
    html: str
    run_id: str | None = None


def find_run(store: Store, ref: str) -> Any:
    """A run by id, unique id prefix or `last`, as the CLI accepts them; NotFound saying why not
    (none, or which runs an ambiguous prefix matches)."""
    row = store.find_run(ref)
    if row is not None:
        return row
    ids = store.run_ids_with_prefix(ref)
    if len(ids) > 1:
        more = ", …" if len(ids) > 5 else ""
        raise NotFound(
            f"run prefix {ref!r} is ambiguous: runs {', '.join(ids[:5])}{more} all start with "
            "it; give more of the id"
        )
    raise NotFound(f"no run {ref}")


@dataclass
class RunData:
    """What several pages of one run need, each read once."""

    store: Store
    run_id: str
    _suite_rows: dict[str, list[ItemRow]] = field(default_factory=dict)
    """{suite: its item rows} (`_suite.suite_rows`), for the suite page and the item page's
    previous/next."""

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
    def verdicts(self) -> dict[str, dict[str, object]]:
        """The audit's verdicts as stored (JSON), what the pages show."""
        return {k: v.to_json() for k, v in self.store.verdicts(self.run_id).items()}

    @cached_property
    def suites(self) -> list[str]:
        return list(self.lineup.run.suites)

    @cached_property
    def item_ids(self) -> dict[str, list[str]]:
        """{suite: its item ids, in the suite's order}."""
        out: dict[str, list[str]] = {}
        for r in self.store.item_keys(self.run_id):
            out.setdefault(r["suite"], []).append(r["item_id"])
        return out

    def primary_scores(self, suite: str) -> dict[str, Row]:
        """{call id: first score row} for the calls of one suite."""
        rows = self.store.suite_scores(self.run_id, suite)
        out: dict[str, Row] = {}
        for r in rows:
            out.setdefault(r["call_id"], r)
        return out
