"""The run summary, recomputed from the store (never from in-memory counters).

Denominators: a failed call is not a wrong answer. A suite's score is over the calls the endpoint
answered, with the failed ones counted beside it (`errors`, `answered`); past 2% failures the score
that counts them as wrong is shown too (`score_failures_as_wrong`), and past `run.max_failed_share`
there is no score at all (`no_score`: "30/30 failed — HTTP 402: ..."). Because failing on the hard
items would raise a score, when endpoints failed on different items each suite also has the score
over the items every endpoint answered (`score_common`); the paired test against the reference
leaves out an item failed on either side and says how many (`left_out_failed`). Latency figures
use successful calls that went over the wire (not cache hits).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from bakeoff._version import __version__
from bakeoff.lineups import Endpoint, Lineup
from bakeoff.runs._capabilities import capability_row
from bakeoff.runs._cost import (
    bill_of,
    pinned_upstream,
    regime_costs,
    served_elsewhere,
    total,
    upstream_warnings,
)
from bakeoff.runs._fidelity import fidelity_of
from bakeoff.runs._front import pareto_front
from bakeoff.runs._pairs import Outcome, common_scores, no_score_causes, paired
from bakeoff.runs._plan import fits, lineup_of_run, planned_calls
from bakeoff.runs._results import (
    SCHEMA_VERSION,
    Bill,
    EndpointSummary,
    Percentiles,
    RegimeCost,
    RunSummary,
    SuiteStats,
    TierStats,
    Tokens,
)
from bakeoff.runs._stopping import call_value, sequence_interval
from bakeoff.stats import item_bootstrap_ci, item_mean_ci, pass_at_k, percentile
from bakeoff.store import ProbeResult, Row, Store, StoreError, Verdict
from bakeoff.suites import Item

if TYPE_CHECKING:
    from bakeoff.store import AuditStop


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def summarize(store: Store, run_id: str) -> dict[str, Any]:
    """A JSON-ready summary of a run (`summary_of(...).to_json()`): per endpoint, counts, errors
    by class, scores, speed, cost, fidelity, capabilities. Kept in the store under the fingerprint
    of the run's data and of this code, so that the next read of an unchanged run costs a query
    (0.4 s to recompute at 10,000 calls: the UI's overview waited that long on every visit)."""
    key = f"{_code_hash()}:{store.run_fingerprint(run_id)}"
    cached = store.cache_get(f"summary:{run_id}:{key}")
    if isinstance(cached, dict):
        return cached
    out = summary_of(store, run_id).to_json()
    with contextlib.suppress(StoreError):  # a database that cannot be written is read as is
        store.cache_summary(run_id, key, out)
    return out


@functools.cache
def _code_hash() -> str:
    """Of the package's code (every module, read once per process: ~5 ms): a changed summary rule
    is a new key, never an old summary served."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(__version__.encode())
    for path in sorted(root.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def summary_of(store: Store, run_id: str) -> RunSummary:
    """The typed summary of a run, recomputed from the store."""
    run = store.run(run_id)
    if run is None:
        raise KeyError(run_id)
    lineup: Lineup = lineup_of_run(store, run_id)
    calls = store.calls_light(run_id)
    score_rows = store.scores(run_id, light=True)
    per_ep: dict[str, list[Any]] = defaultdict(list)
    all_of: dict[str, list[Any]] = defaultdict(list)
    for c in calls:
        all_of[c["endpoint"]].append(c)
        if not c["suite"].startswith("fidelity."):  # audit calls are summarised under `fidelity`
            per_ep[c["endpoint"]].append(c)
    side_of: dict[str, list[Any]] = defaultdict(list)
    for c in store.side_calls(run_id):
        side_of[c["endpoint"]].append(c)
    retried = store.retried_calls(run_id)
    bills = {ep.name: bill_of(all_of[ep.name], side_of[ep.name]) for ep in lineup.endpoints}
    upstream_notes = upstream_warnings(lineup, all_of, side_of)
    verdicts = store.verdicts(run_id)
    reference = lineup.reference or _assumed(verdicts, None)
    stop = store.audit_stop(run_id)
    probes = store.probes(run_id)
    item_rows = store.items(run_id)
    items = {r["item_id"]: r for r in item_rows}
    suite_items = [Item.from_stored(r) for r in item_rows if r["suite"] in lineup.run.suites]
    outcomes = _outcomes(calls, score_rows, lineup)
    endpoints = [
        _endpoint_entry(
            ep,
            lineup,
            _EndpointRows(
                suite_calls=per_ep.get(ep.name, []),
                every_call=(*all_of[ep.name], *side_of[ep.name]),
                planned=planned_calls(store, run_id, lineup, ep.name, suite_items),
                suites={
                    suite: _suite_stats(
                        outcomes[(ep.name, suite)], items, lineup.run.max_failed_share
                    )
                    for suite in lineup.run.suites
                },
                verdict=verdicts.get(ep.name),
                probe=probes.get(ep.name),
                bill=bills[ep.name],
                audit_cost=regime_costs(all_of[ep.name], side_of[ep.name]),
                stop=stop,
                reference=reference,
            ),
            retried,
        )
        for ep in lineup.endpoints
    ]
    if lineup.reference is None:
        _assumed(verdicts, endpoints)
    if lineup.run.stop_when is not None:
        _stopped_suites(endpoints, item_rows, outcomes, lineup)
    paired(endpoints, outcomes, lineup)
    common_scores(endpoints, outcomes, lineup)
    no_score_causes(endpoints, store, run_id)
    pareto = pareto_front(endpoints)
    return RunSummary.model_validate(
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "status": run["status"],
            "created_at": run["created_at"],
            "finished_at": run["finished_at"],
            "reference": lineup.reference,
            "suites": list(lineup.run.suites),
            "repeats": lineup.run.repeats,
            "endpoints": endpoints,
            "pareto": pareto,
            "warnings": _isolation_warnings(endpoints)
            + upstream_notes
            + ([stop.text()] if stop is not None else []),
            "cost_usd": total(b.total_usd for b in bills.values()),
            **({"audit_stop": stop} if stop is not None else {}),
        }
    )


def _stopped_suites(
    endpoints: list[EndpointSummary],
    item_rows: list[Row],
    outcomes: dict[tuple[str, str], list[Outcome]],
    lineup: Lineup,
) -> None:
    """Under `run.stop_when`: each suite's stats as the confidence sequence states them."""
    of_suite: dict[str, list[Item]] = defaultdict(list)
    for r in item_rows:
        of_suite[r["suite"]].append(Item.from_stored(r))
    for e in endpoints:
        ep = lineup.endpoint(e.name)
        for suite in lineup.run.suites:
            planned = sum(1 for it in of_suite[suite] if fits(ep, it))
            rows = outcomes[(ep.name, suite)]
            _sequence_stats(e.suites[suite], suite, rows, lineup, planned)


@dataclass(frozen=True)
class _EndpointRows:
    """What the store holds of one endpoint of the run, and its suites' stats."""

    suite_calls: list[Row]
    every_call: tuple[Row, ...]
    """Suite, audit, probe and judge calls: its bill, and who served them."""
    planned: int
    suites: dict[str, SuiteStats]
    verdict: Verdict | None
    probe: ProbeResult | None
    bill: Bill
    audit_cost: dict[str, RegimeCost]
    """Its audit calls per regime (`regime_costs`)."""
    stop: AuditStop | None
    reference: str | None = None
    """The run's reference: the lineup's, or the one a consensus audit assumed."""


def _assumed(verdicts: dict[str, Verdict], endpoints: list[EndpointSummary] | None) -> str | None:
    """The reference a consensus audit assumed (None: there was none); with `endpoints`, its entry
    is marked "reference (assumed)" with the assumption as its why."""
    assumed = next((v.assumed_reference for v in verdicts.values() if v.assumed_reference), None)
    if assumed is None:
        return None
    for e in endpoints or []:
        if e.name == assumed.representative and e.fidelity is not None:
            e.fidelity.claim, e.fidelity.why = "reference (assumed)", assumed.text
    return assumed.representative


def _endpoint_entry(
    ep: Endpoint, lineup: Lineup, of: _EndpointRows, retried: dict[str, tuple[float, int]]
) -> EndpointSummary:
    """One endpoint's line of the summary, from its suite calls: counts, errors by class, speed of
    its live calls, tokens, fidelity, capabilities; and from every call its bill and who served
    them (`_upstream_checks`)."""
    rows, bill = of.suite_calls, of.bill
    ok = [c for c in rows if c["status"] == "ok"]
    errors = Counter(c["error_class"] for c in rows if c["status"] != "ok")
    live = [c for c in ok if not c["cached"]]
    ttft = [c["ttft_ms"] for c in live if c["ttft_ms"] is not None]
    tps = []
    for c in live:
        n, first, last = c["completion_tokens"], c["ttft_ms"], c["last_token_ms"]
        if n and n > 1 and first is not None and last is not None and last > first:
            tps.append((n - 1) / ((last - first) / 1000))
    prompt_tokens = sum(c["prompt_tokens"] or 0 for c in live)
    completion_tokens = sum(c["completion_tokens"] or 0 for c in live)
    entry = EndpointSummary(
        name=ep.name,
        model=ep.model,
        provider=ep.provider,
        reference=ep.name == lineup.reference,
        planned=of.planned,
        calls=len(rows),
        successes=len(ok),
        errors=dict(sorted(errors.items())),
        error_rate=_round(sum(errors.values()) / len(rows) if rows else None, 4),
        cached=sum(1 for c in rows if c["cached"]),
        attempts=sum(c["n_attempts"] for c in rows),
        suites=of.suites,
        ttft_ms=Percentiles(p50=_round(percentile(ttft, 50)), p90=_round(percentile(ttft, 90))),
        output_tok_s=Percentiles(p50=_round(percentile(tps, 50), 1)),
        tokens=Tokens(
            # unknown, not 0, when no live call reported them (a server that sends no usage)
            prompt=None
            if live and all(c["prompt_tokens"] is None for c in live)
            else prompt_tokens,
            completion=completion_tokens,
        ),
        usage_sources=dict(Counter(c["usage_source"] for c in ok)),
        upstreams=dict(Counter(c["upstream"] for c in ok if c["upstream"])),
        cost_usd=bill.total_usd,
        bill=bill,
        fidelity=fidelity_of(
            of.verdict,
            ep.name == of.reference,
            of.stop,
            ep.claims.quantization if ep.claims else None,
        ),
        capabilities=dict(capability_row(of.probe)) if of.probe is not None else None,
        **_reliability(rows, live, retried),
    )
    claims = {"context": ep.context, **(ep.claims.model_dump() if ep.claims else {})}
    if any(v is not None for v in claims.values()):
        entry.claims = {k: v for k, v in claims.items() if v is not None}
    _upstream_checks(entry, ep, of.every_call)
    if of.audit_cost:
        entry.audit_cost = of.audit_cost
    suite_cost = bill.by_purpose.get("suite")
    if suite_cost is not None:
        correct = sum(v.correct or 0 for v in of.suites.values())
        tokens = prompt_tokens + completion_tokens
        entry.cost_per_1m_tokens = round(suite_cost / tokens * 1e6, 4) if tokens else None
        entry.cost_per_correct = round(suite_cost / correct, 6) if correct else None
    return entry


def _upstream_checks(entry: EndpointSummary, ep: Endpoint, every_call: tuple[Row, ...]) -> None:
    """For an endpoint pinned to one upstream: how many of its calls another one served."""
    pinned = pinned_upstream(ep)
    if pinned is not None:
        entry.pinned_upstream = pinned
        entry.wrong_upstream = sum(1 for c in every_call if served_elsewhere(pinned, c["upstream"]))
        entry.wrong_upstream_of = len(every_call)


class _Reliability(TypedDict):
    retried: int
    retry_rate: float | None
    rate_limited: int
    rate_limited_calls: int
    ttft_first_send_ms: Percentiles


def _reliability(
    rows: list[Row], live: list[Row], retried: dict[str, tuple[float, int]]
) -> _Reliability:
    """What the error rate alone hides: the calls that needed retries, the attempts refused with a
    rate limit, and TTFT from the first attempt's send (the wait a user of the endpoint had) beside
    the TTFT of the attempt that answered — a retried call's own TTFT flatters the endpoint."""
    mine = [retried[c["id"]] for c in rows if c["id"] in retried]
    from_first = []
    for c in live:
        if c["ttft_ms"] is None:
            continue
        extra = 0.0
        if c["id"] in retried:
            extra = max(0.0, (retried[c["id"]][0] - c["started_at"]) * 1000)
        from_first.append(c["ttft_ms"] + extra)
    return _Reliability(
        retried=len(mine),
        retry_rate=_round(len(mine) / len(rows) if rows else None, 4),
        rate_limited=sum(n for _, n in mine),
        rate_limited_calls=sum(1 for _, n in mine if n)
        + sum(1 for c in rows if c["id"] not in retried and c["error_class"] == "rate_limited"),
        ttft_first_send_ms=Percentiles(
            p50=_round(percentile(from_first, 50)), p90=_round(percentile(from_first, 90))
        ),
    )


def _isolation_warnings(endpoints: list[EndpointSummary]) -> list[str]:
    """One line per endpoint and suite whose model-written code ran without the sandbox."""
    return [
        f"{e.name} / {suite}: model-written code ran UNISOLATED (--unsafe-code) on "
        f"{st.unisolated_calls} of {st.n} calls"
        for e in endpoints
        for suite, st in e.suites.items()
        if st.unisolated_calls
    ]


def _outcomes(
    calls: list[Any], score_rows: list[Any], lineup: Lineup
) -> defaultdict[tuple[str, str], list[Outcome]]:
    by_call: dict[str, list[Any]] = defaultdict(list)
    for r in score_rows:  # in insertion order: the first score of a call is its primary one
        by_call[r["call_id"]].append(r)
    out: defaultdict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for c in calls:
        if c["suite"] not in lineup.run.suites:
            continue
        rows = by_call.get(c["id"], [])
        err = c["status"] != "ok"
        if rows:
            first = rows[0]
            passed = None if first["passed"] is None else bool(first["passed"])
            value = float(first["value"])
        else:
            passed, value = (False if err else None), 0.0
        out[(c["endpoint"], c["suite"])].append(
            Outcome(
                item_id=c["item_id"],
                repeat=c["repeat"],
                value=value,
                passed=passed,
                error=err,
                metrics={r["scorer"]: float(r["value"]) for r in rows[1:]},
                tool_call=bool(c["has_tool_calls"]) or c["finish_reason"] == "tool_calls",
                prompt_tokens=c["prompt_tokens"],
                finished_at=float(c["finished_at"] or 0.0),
            )
        )
    return out


def _suite_stats(
    every: list[Outcome], items: dict[str, Row], max_failed: float = 0.2
) -> SuiteStats:
    """One suite's score over the answered calls: the mean of per-item means, with its interval
    over items (an item asked several times is one observation; `stats/_items.py`); the failed
    calls counted beside it, never as wrong answers (see the module docstring)."""
    n = len(every)
    rows = [o for o in every if not o.error]
    errors = n - len(rows)
    binary = bool(rows) and all(o.passed is not None for o in rows)
    values = [float(bool(o.passed)) if binary else o.value for o in rows]
    by_item: dict[str, list[float]] = defaultdict(list)
    for o, v in zip(rows, values, strict=True):
        by_item[o.item_id].append(v)
    mean: float | None = None
    lo = hi = 0.0
    n_items = 0
    if rows and binary:
        mean, (lo, hi), n_items = item_mean_ci(by_item)
    elif rows:
        mean, (lo, hi), n_items = item_bootstrap_ci(by_item)
    share = errors / n if n else 0.0
    out = SuiteStats(
        score=_round(mean, 4) if share <= max_failed else None,
        correct=int(sum(values)) if binary else None,
        n=n,
        answered=len(rows),
        n_items=n_items,
        ci95=[round(lo, 4), round(hi, 4)],
        ci_method="wilson" if binary or not rows else "bootstrap",
        errors=errors,
        error_rate=_round(errors / n if n else None, 4),
        tiers=_tiers(rows, values, items),
    )
    if share > 0.02:
        out.score_failures_as_wrong = _round(sum(values) / n, 4)
    if share > max_failed or not rows:
        out.no_score = f"{errors}/{n} failed"
    _secondary(out, rows)
    reps = min((len(v) for v in by_item.values()), default=0)
    if binary and reps > 1:  # unbiased pass@k when items were asked more than once (0/1 values)
        out.pass_at_k = {
            str(k): round(
                sum(pass_at_k(len(v), int(sum(v)), k) for v in by_item.values()) / len(by_item),
                4,
            )
            for k in sorted({1, reps})
        }
    _context_stats(out, rows, items)
    return out


def _tiers(rows: list[Outcome], values: list[float], items: dict[str, Row]) -> dict[str, TierStats]:
    """The score per tier (per language for multilingual, per category for tools)."""
    tiers: dict[str, list[float]] = defaultdict(list)
    for o, v in zip(rows, values, strict=True):
        row = items.get(o.item_id)
        tiers[row["tier"] if row is not None and row["tier"] else "all"].append(v)
    return {t: TierStats(score=_round(sum(v) / len(v), 4), n=len(v)) for t, v in tiers.items()}


def _secondary(out: SuiteStats, rows: list[Outcome]) -> None:
    """The means of the suite's other scorers, and the calls whose code ran unisolated."""
    names = sorted({k for o in rows for k in o.metrics})
    if names:
        out.metrics = {
            k: _round(sum(o.metrics.get(k, 0.0) for o in rows) / len(rows), 4) for k in names
        }
    unisolated = sum(1 for o in rows if o.metrics.get("isolated") == 0.0)
    if unisolated:  # the code sandbox was not used (bakeoff run --unsafe-code)
        out.unisolated_calls = unisolated


def _context_stats(out: SuiteStats, rows: list[Outcome], items: dict[str, Row]) -> None:
    """Long-context: the longest length at which every item was fully answered, and truncation."""
    ctx: dict[int, list[bool]] = defaultdict(list)
    for o in rows:
        row = items.get(o.item_id)
        meta = orjson.loads(row["meta_json"]) if row is not None and row["meta_json"] else {}
        if "context_tokens" in meta:
            ctx[int(meta["context_tokens"])].append(bool(o.passed))
    if not ctx:
        return
    eff = 0
    for length in sorted(ctx):
        if not all(ctx[length]):
            break
        eff = length
    out.effective_context = eff
    out.by_length = {str(L): _round(sum(v) / len(v), 4) for L, v in sorted(ctx.items())}
    out.truncation_suspected = sum(1 for o in rows if o.metrics.get("truncation_suspected"))


def _sequence_stats(
    stats: SuiteStats, suite: str, rows: list[Outcome], lineup: Lineup, planned_items: int
) -> None:
    """A suite under `run.stop_when`: its interval is the anytime-valid confidence sequence
    (valid where the run stopped), and whether it stopped before its last item."""
    ordered = sorted(rows, key=lambda o: o.finished_at)  # the path the run's Stopper saw
    events = [(o.item_id, call_value(o.passed, o.value)) for o in ordered]
    _, (lo, hi), _ = sequence_interval(suite, events, lineup)
    items = {o.item_id for o in rows}
    stats.ci95 = [round(lo, 4), round(hi, 4)]
    stats.ci_method = "confidence_sequence"
    stats.stopped_early = len(items) < planned_items
    stats.items_planned = planned_items
