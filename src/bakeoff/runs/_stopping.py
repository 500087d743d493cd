"""Stopping a suite early once its score is precise enough (`run.stop_when`).

Items of a suite with a stopping rule are asked in a seeded random order (`plan()`), so that the
items answered so far are a random sample of the suite, not its easy first tier. After each item
is answered in full (every repeat) its mean enters an anytime-valid confidence sequence for the
endpoint's score: the hedged betting sequence of Waudby-Smith & Ramdas (2024,
`stats.BettingCS`), its bets sized for the target half-width (λ = (ci_width/2) / σ̂², which keeps
the guarantee: any predictable bet does). Once the interval is narrower than `ci_width` (and
`min_items` are in), the suite's remaining items are skipped for that endpoint. Because the
sequence holds at every number of items at once, the interval reported at the stopping point keeps
its 95% coverage — a fixed-n interval read at a data-dependent stop would not. The sequence
depends on the order in which items were completed: the summary and a resumed run replay the
stored calls in the order they finished. Item means are clipped to [0, 1], the range the
sequence is for.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bakeoff.lineups import Lineup
from bakeoff.stats import BettingCS
from bakeoff.store import Row


def call_value(passed: bool | None, value: float) -> float:
    """A call's primary score as the stopping rule and the summary read it."""
    return float(bool(passed)) if passed is not None else value


def sequence_interval(
    suite: str, events: list[tuple[str, float]], lineup: Lineup
) -> tuple[float | None, tuple[float, float], int]:
    """(mean, anytime-valid interval, items) over the items answered in full, from one endpoint's
    (item, value) calls of `suite` in the order they finished — the Stopper's own path."""
    stopper = Stopper(lineup, [(suite, item_id, value) for item_id, value in events])
    return stopper.interval(suite)


class Stopper:
    """One endpoint's suites and whether each has stopped (nothing to do without a rule). Each
    item answered in full updates its suite's confidence sequence (O(grid) per item)."""

    def __init__(self, lineup: Lineup, stored: list[tuple[str, str, float]] | None = None) -> None:
        self.lineup = lineup
        self.rule = lineup.run.stop_when
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.sums: dict[str, float] = defaultdict(float)
        self.complete: dict[str, int] = defaultdict(int)
        self.sequences: dict[str, BettingCS] = {}
        self.stopped: set[str] = set()
        for suite, item_id, value in stored or []:
            self.record(suite, item_id, value)

    def skip(self, suite: str) -> bool:
        return suite in self.stopped

    def record(self, suite: str, item_id: str, value: float) -> None:
        rule = self.rule
        if rule is None or suite not in self.lineup.run.suites:
            return
        got = self.values[suite][item_id]
        got.append(value)
        if len(got) != self.lineup.run.repeats:
            return
        item_mean = min(max(sum(got) / len(got), 0.0), 1.0)
        self.sums[suite] += item_mean
        self.complete[suite] += 1
        if suite not in self.sequences:
            self.sequences[suite] = BettingCS(half_width=rule.ci_width / 2)
        self.sequences[suite].update(item_mean)
        if suite in self.stopped or self.complete[suite] < rule.min_items:
            return
        lo, hi = self.interval(suite)[1]
        if hi - lo < rule.ci_width:
            self.stopped.add(suite)

    def interval(self, suite: str) -> tuple[float | None, tuple[float, float], int]:
        """(mean, interval, items answered in full) of a suite so far."""
        n = self.complete[suite]
        if n == 0 or suite not in self.sequences:
            return None, (0.0, 1.0), 0
        lo, hi = self.sequences[suite].interval()
        return self.sums[suite] / n, (float(lo), float(hi)), n


def stored_values(
    calls: list[Any], scores: list[Any], endpoint: str
) -> list[tuple[str, str, float]]:
    """(suite, item, primary value) of an endpoint's stored calls (errors: 0), for a resume, in
    the order the calls finished (the confidence sequence depends on it)."""
    first: dict[str, Row] = {}
    for r in scores:  # in insertion order: the first score of a call is its primary one
        first.setdefault(r["call_id"], r)
    out = []
    for c in sorted(calls, key=_finished):
        if c["endpoint"] != endpoint:
            continue
        s = first.get(c["id"])
        if c["status"] != "ok" or s is None:
            out.append((c["suite"], c["item_id"], 0.0))
        else:
            passed = None if s["passed"] is None else bool(s["passed"])
            out.append((c["suite"], c["item_id"], call_value(passed, s["value"])))
    return out


def _finished(call: Any) -> float:
    try:
        return float(call["finished_at"] or 0.0)
    except (KeyError, IndexError):  # a row without the column: stored order
        return 0.0
