"""The audit's cost cap (`audit.max_cost`, `bakeoff audit --max-cost`): before each round, what the
round would cost, from what the run's stored audit calls cost so far.

Each endpoint's calls of the round are projected at the highest cost of one of its priced audit
calls so far (the same prompts' sizes and `max_tokens` every round, so a round passes that only
where a call costs more than every one before it); before its first priced call, at its `price` for
the prompt's UTF-8 bytes (a token is at least one byte) plus 32 tokens of chat template per message,
and `max_tokens` of output. An endpoint with no price that reports no cost adds nothing: its calls
are unpriced, counted apart, never against the cap. A round whose projection would take the spend
past the cap is not started."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bakeoff.lineups import AuditSettings, Lineup, Price, purposes
from bakeoff.runs import Job
from bakeoff.store import AuditStop, Store
from bakeoff.suites import Item

TEMPLATE_TOKENS = 32
"""Tokens of chat template per message assumed before an endpoint's first priced call."""


@dataclass(frozen=True)
class Projection:
    """The audit's spend so far and the projected cost of its next round, in USD."""

    spent_usd: float
    next_round_usd: float
    unpriced: int
    """Answered audit calls with no price: not counted."""

    def crosses(self, cap: float) -> bool:
        return self.spent_usd + self.next_round_usd > cap


def project(
    store: Store, run_id: str, lineup: Lineup, settings: AuditSettings, jobs: dict[str, list[Job]]
) -> Projection:
    """What the audit spent so far (its stored priced calls) and what `jobs` would add."""
    per_call: dict[str, list[float]] = {}
    spent, unpriced = 0.0, 0
    for c in store.calls_light(run_id):
        if not c["suite"].startswith(purposes.FIDELITY_PREFIX) or c["status"] != "ok":
            continue
        if c["cached"]:
            continue  # a replay from bakeoff's cache: not billed
        if c["cost_usd"] is None:
            unpriced += 1
            continue
        spent += c["cost_usd"]
        per_call.setdefault(c["endpoint"], []).append(c["cost_usd"])
    nxt = 0.0
    for name, js in jobs.items():
        if not js:
            continue
        seen = per_call.get(name)
        if seen:
            nxt += len(js) * max(seen)
            continue
        price = lineup.endpoint(name).price
        if price is not None:
            nxt += sum(guess_call_usd(price, j.item, settings.max_tokens) for j in js)
    return Projection(spent, nxt, unpriced)


def prompt_tokens_bound(item: Item) -> int:
    """A bound on a prompt's tokens before any call reported them: its UTF-8 bytes (a token is at
    least one byte) plus `TEMPLATE_TOKENS` of chat template per message."""
    messages = item.messages or [{"role": "user", "content": item.prompt or ""}]
    size = len(orjson.dumps([m.get("content") for m in messages]))
    return size + TEMPLATE_TOKENS * len(messages)


def guess_call_usd(price: Price, item: Item, max_tokens: int) -> float:
    """One call's cost before any was priced: `prompt_tokens_bound` in, `max_tokens` out."""
    return (prompt_tokens_bound(item) * price.input_per_m + max_tokens * price.output_per_m) / 1e6


def stop_if_capped(
    store: Store,
    run_id: str,
    lineup: Lineup,
    settings: AuditSettings,
    jobs: dict[str, list[Job]],
    rounds: int,
) -> AuditStop | None:
    """The stop, recorded with the run, when the next round would pass `audit.max_cost`; else
    None (no cap, or the round fits under it)."""
    cap = settings.max_cost
    if cap is None:
        return None
    p = project(store, run_id, lineup, settings, jobs)
    if not p.crosses(cap):
        return None
    stop = AuditStop(
        cap_usd=cap,
        spent_usd=round(p.spent_usd, 8),
        next_round_usd=round(p.next_round_usd, 8),
        rounds=rounds,
        unpriced=p.unpriced,
    )
    store.put_audit_stop(run_id, stop)
    return stop
