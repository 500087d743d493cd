"""Comparisons across a run's endpoints on the same items: each against the reference (the paired
test, items failed on either side left out), the score over the items every endpoint answered,
and why a suite has no score. Parts of the summary (`_summary.py`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from bakeoff.lineups import Lineup
from bakeoff.runs._results import EndpointSummary, Paired
from bakeoff.stats import holm, mcnemar_exact, paired_item_differences, paired_mean_test
from bakeoff.store import Store


@dataclass
class Outcome:
    """One call's result for the statistics: primary score, pass/fail, secondary metrics."""

    item_id: str
    repeat: int
    value: float
    passed: bool | None
    error: bool
    metrics: dict[str, float] = field(default_factory=dict)
    tool_call: bool = False
    prompt_tokens: int | None = None
    finished_at: float = 0.0


Outcomes = Mapping[tuple[str, str], list[Outcome]]
"""(endpoint, suite) → its calls' outcomes."""


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def paired(endpoints: list[EndpointSummary], outcomes: Outcomes, lineup: Lineup) -> None:
    """Each endpoint vs the reference on the same items (`_paired_test`), Holm-adjusted across the
    endpoints of each suite."""
    ref = lineup.reference
    if ref is None:
        return
    for suite in lineup.run.suites:
        ref_rows = {(o.item_id, o.repeat): o for o in outcomes[(ref, suite)]}
        tests: list[tuple[Paired, float | None]] = []
        for e in endpoints:
            if e.name == ref:
                continue
            both = [
                (ref_rows[(o.item_id, o.repeat)], o)
                for o in outcomes[(e.name, suite)]
                if (o.item_id, o.repeat) in ref_rows
            ]
            entry = _paired_test(both, suite)
            e.suites[suite].vs_reference = entry
            tests.append((entry, entry.p_value))
        for (entry, _), adj in zip(tests, holm([p for _, p in tests]), strict=True):
            if adj is not None:
                entry.p_holm = adj
                entry.significant = adj < 0.05


def _paired_test(both: list[tuple[Outcome, Outcome]], suite: str) -> Paired:
    """One endpoint's calls against the reference's on the same (item, repeat): McNemar for
    pass/fail with one call per item, else the sign-flip test on per-item mean differences, with a
    bootstrap-t test that must reject too (`stats.paired_mean_test`; repeats are not independent).
    Tools also get the tool-call F1. An item failed on either side is not evidence about quality:
    left out, counted."""
    pairs = [(a, b) for a, b in both if not a.error and not b.error]
    entry = Paired(n_pairs=len(pairs))
    if len(pairs) < len(both):
        entry.left_out_failed = len(both) - len(pairs)
    if not pairs:
        return entry
    entry.n_items = len({o.item_id for _, o in pairs})
    binary = all(a.passed is not None and b.passed is not None for a, b in pairs)
    if binary and entry.n_items == len(pairs):  # one call per item: McNemar
        p, b, c = mcnemar_exact(
            [bool(a.passed) for a, _ in pairs], [bool(b.passed) for _, b in pairs]
        )
        delta = (c - b) / len(pairs)
        entry.test, entry.ref_only, entry.cand_only = "mcnemar", b, c
    else:  # repeats, or graded scores: per-item differences, sign-flip test
        ref_by: dict[str, list[float]] = defaultdict(list)
        cand_by: dict[str, list[float]] = defaultdict(list)
        for a, o in pairs:
            ref_by[a.item_id].append(_val(a, binary))
            cand_by[o.item_id].append(_val(o, binary))
        delta, p, ci = paired_mean_test(paired_item_differences(ref_by, cand_by))
        entry.test = "sign_flip"
        if ci is not None:
            entry.delta_ci95 = [round(ci[0], 4), round(ci[1], 4)]
    entry.delta, entry.p_value = round(delta, 4), p
    if suite == "tools":
        entry.tool_call_f1 = _f1([a.tool_call for a, _ in pairs], [b.tool_call for _, b in pairs])
    return entry


def common_scores(endpoints: list[EndpointSummary], outcomes: Outcomes, lineup: Lineup) -> None:
    """Where endpoints failed on different items, each suite's score over the items every
    endpoint answered (failing on the hard items must not raise a score)."""
    names = [e.name for e in endpoints]
    for suite in lineup.run.suites:
        failed = {n: {o.item_id for o in outcomes[(n, suite)] if o.error} for n in names}
        if len({frozenset(f) for f in failed.values()}) <= 1:
            continue  # the same items failed everywhere (or none): the scores compare already
        answered = [{o.item_id for o in outcomes[(n, suite)] if not o.error} for n in names]
        common = set.intersection(*answered) if answered else set()
        for e in endpoints:
            rows = [o for o in outcomes[(e.name, suite)] if o.item_id in common and not o.error]
            binary = bool(rows) and all(o.passed is not None for o in rows)
            by_item: dict[str, list[float]] = defaultdict(list)
            for o in rows:
                by_item[o.item_id].append(_val(o, binary))
            means = [sum(v) / len(v) for v in by_item.values()]
            st = e.suites[suite]
            st.score_common = _round(sum(means) / len(means), 4) if means else None
            st.n_common_items = len(common)


def no_score_causes(endpoints: list[EndpointSummary], store: Store, run_id: str) -> None:
    """A suite with no score says why, in the provider's words ("30/30 failed — HTTP 402:
    Insufficient credits"), from the most common failure of the endpoint's calls."""
    causes = store.failure_causes(run_id)
    for e in endpoints:
        for st in e.suites.values():
            if st.no_score and e.name in causes:
                st.no_score += " — " + causes[e.name]


def _val(o: Outcome, binary: bool) -> float:
    return float(bool(o.passed)) if binary else o.value


def _f1(truth: list[bool], pred: list[bool]) -> float | None:
    """F1 of "called a tool" against the reference's choice."""
    tp = sum(1 for t, p in zip(truth, pred, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, pred, strict=True) if p and not t)
    fn = sum(1 for t, p in zip(truth, pred, strict=True) if t and not p)
    if tp + fp + fn == 0:
        return None
    return round(2 * tp / (2 * tp + fp + fn), 4)
