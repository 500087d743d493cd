"""Stopping a suite early once its score is precise enough (`run.stop_when`).

Items of a suite with a stopping rule are asked in a seeded random order (`plan()`), so that the
items answered so far are a random sample of the suite, not its easy first tier. After each
answer the endpoint's score over the items answered in full (every repeat) gets an anytime-valid
confidence sequence (`stats.mean_confidence_sequence`); once it is narrower than `ci_width` (and
`min_items` are in), the suite's remaining items are skipped for that endpoint. Because the
sequence holds at every number of items at once, the interval reported at the stopping point keeps
its 95% coverage — a fixed-n interval read at a data-dependent stop would not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bakeoff.lineups import Lineup
from bakeoff.stats import cs_half_width, items_for_width, mean_confidence_sequence


def call_value(passed: bool | None, value: float) -> float:
    """A call's primary score as the stopping rule and the summary read it."""
    return float(bool(passed)) if passed is not None else value


def sequence_interval(
    by_item: dict[str, list[float]], lineup: Lineup
) -> tuple[float | None, tuple[float, float], int]:
    """(mean, anytime-valid interval, items) over the items answered in full."""
    rule = lineup.run.stop_when
    assert rule is not None
    complete = [sum(v) / len(v) for v in by_item.values() if len(v) >= lineup.run.repeats]
    mean, ci = mean_confidence_sequence(complete, t_opt=items_for_width(rule.ci_width))
    return mean, ci, len(complete)


class Stopper:
    """One endpoint's suites and whether each has stopped (nothing to do without a rule). Keeps
    running sums of the items answered in full, so each answer costs O(1)."""

    def __init__(self, lineup: Lineup, stored: list[tuple[str, str, float]] | None = None) -> None:
        self.lineup = lineup
        self.rule = lineup.run.stop_when
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.sums: dict[str, float] = defaultdict(float)
        self.complete: dict[str, int] = defaultdict(int)
        self.stopped: set[str] = set()
        self.t_opt = items_for_width(self.rule.ci_width) if self.rule is not None else 0.0
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
        self.sums[suite] += sum(got) / len(got)
        self.complete[suite] += 1
        n = self.complete[suite]
        if suite in self.stopped or n < rule.min_items:
            return
        mean = self.sums[suite] / n
        half = cs_half_width(n, t_opt=self.t_opt)
        if min(1.0, mean + half) - max(0.0, mean - half) < rule.ci_width:
            self.stopped.add(suite)


def stored_values(
    calls: list[Any], scores: list[Any], endpoint: str
) -> list[tuple[str, str, float]]:
    """(suite, item, primary value) of an endpoint's stored calls (errors: 0), for a resume."""
    first: dict[str, Any] = {}
    for r in scores:  # in insertion order: the first score of a call is its primary one
        first.setdefault(r["call_id"], r)
    out = []
    for c in calls:
        if c["endpoint"] != endpoint:
            continue
        s = first.get(c["id"])
        if c["status"] != "ok" or s is None:
            out.append((c["suite"], c["item_id"], 0.0))
        else:
            passed = None if s["passed"] is None else bool(s["passed"])
            out.append((c["suite"], c["item_id"], call_value(passed, s["value"])))
    return out
