"""A watch's cost: what a check will cost (projected before it is made) and what it did cost (its
stored calls, `runs.regime_costs`), and the caps that keep a check from starting.

A check's projection per endpoint: its calls (anchors + rotating) at the highest cost of one of its
priced calls in the watch's recent checks, or — before any — at the lineup's `price` for each
prompt's token bound (`audit.prompt_tokens_bound`) and `max_tokens` of output; an endpoint with
neither has no price (never 0 $). The re-check's worst case (every anchor changed, asked again) is
stated apart and counted against the caps, so a cap holds even at a crossing.

A cap is checked before a check starts (`gate`): the per-check cap against the projection, the
per-day cap against the spend of the checks begun in the last 24 h of the watch's clock (their runs'
and re-checks' stored costs) plus the projection. A check that would pass one is not made: it is
stored as `skipped-cost` (a gap in the schedule; no call, no detector step)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bakeoff.audit import audit_items, guess_call_usd, prompt_tokens_bound
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.runs import RegimeCost, audit_costs
from bakeoff.store import Store

if TYPE_CHECKING:
    from bakeoff.watch._check import WatchSettings

DAY_S = 86_400.0
RECENT_CHECKS = 4
"""Checks whose priced calls give the per-call figure of a projection (the most recent ones)."""
SKIPPED = "skipped-cost"
"""A check's status when a cap kept it from being made."""


def rotating_seed(pool_seed: int, seq: int) -> int:
    """The seed of check `seq`'s rotating prompts (and of its run)."""
    digest = hashlib.sha256(f"watch-rotating:{pool_seed}:{seq}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class CostCaps:
    per_check_usd: float | None = None
    per_day_usd: float | None = None


@dataclass(frozen=True)
class Projection:
    """One endpoint's projected cost of one check."""

    endpoint: str
    calls: int
    recheck_calls: int
    """The re-check's worst case: every anchor asked again."""
    prompt_tokens: int
    """A bound on the check's prompt tokens."""
    max_tokens: int
    """The check's output tokens at most (`max_tokens` per call)."""
    usd: float | None
    """One check; None: no price (neither a `price` nor a priced call so far)."""
    recheck_usd: float | None
    source: Literal["price", "checks", "none"]

    def text(self) -> str:
        usd = "no price" if self.usd is None else f"${self.usd:.6f}"
        rc = "" if self.recheck_usd is None else f" (${self.recheck_usd:.6f})"
        src = {"price": "at its price", "checks": "at its past calls' cost", "none": ""}
        return (
            f"{self.endpoint}: {self.calls} calls, <= {self.prompt_tokens:,} prompt + "
            f"{self.max_tokens:,} output tokens, {usd} {src[self.source]}".rstrip()
            + f"; re-check at worst {self.recheck_calls} calls{rc}"
        )


def project(
    lineup: Lineup, settings: WatchSettings, seq: int, per_call: dict[str, float]
) -> list[Projection]:
    """Each endpoint's projected cost of check `seq` (`per_call`: its highest priced call so far)."""
    max_tokens = AuditSettings().max_tokens
    regime = "greedy"  # anchors first: the re-check's worst case is their calls
    items = audit_items(regime, seed=settings.pool_seed, n=settings.anchors)
    if settings.rotating:
        seed = rotating_seed(settings.pool_seed, seq)
        items += audit_items(regime, seed=seed, n=settings.rotating)
    calls, re_calls = len(items), settings.anchors if settings.recheck else 0
    out = []
    for ep in lineup.endpoints:
        usd: float | None
        re_usd: float | None
        source: Literal["price", "checks", "none"]
        seen = per_call.get(ep.name)
        if seen is not None:
            usd, re_usd, source = calls * seen, re_calls * seen, "checks"
        elif ep.price is not None:
            costs = [guess_call_usd(ep.price, i, max_tokens) for i in items]
            usd, re_usd, source = sum(costs), sum(costs[:re_calls]), "price"
        else:
            usd, re_usd, source = None, None, "none"
        out.append(
            Projection(
                ep.name,
                calls,
                re_calls,
                sum(prompt_tokens_bound(i) for i in items),
                calls * max_tokens,
                usd,
                re_usd if re_calls else None,
                source,
            )
        )
    return out


def check_runs(store: Store, name: str, seqs: Iterable[int]) -> list[str]:
    """The runs of these checks: each check's own, and its re-checks'."""
    want = set(seqs)
    runs = [c.run_id for c in store.watch_checks(name) if c.seq in want and c.run_id]
    for s in store.watch_steps(name):
        if s.seq in want and s.recheck_json:
            rid = json.loads(s.recheck_json).get("run_id")
            if rid:
                runs.append(rid)
    return runs


def actual(store: Store, run_ids: Iterable[str]) -> dict[str, RegimeCost]:
    """What these runs cost per endpoint, from their stored calls (`runs.regime_costs`)."""
    calls = [c for rid in run_ids for c in store.calls(rid)]
    return {ep: regimes["greedy"] for ep, regimes in audit_costs(calls).items()}


def _per_call(store: Store, runs: list[str]) -> dict[str, float]:
    """Each endpoint's highest cost of one priced, answered, live call in these runs."""
    out: dict[str, float] = {}
    for rid in runs:
        for c in store.calls(rid):
            if c["status"] == "ok" and not c["cached"] and c["cost_usd"] is not None:
                out[c["endpoint"]] = max(out.get(c["endpoint"], 0.0), c["cost_usd"])
    return out


@dataclass(frozen=True)
class CostStop:
    """Why a check was not made: the cap it would have passed."""

    cap: Literal["check", "day"]
    cap_usd: float
    projected_usd: float
    """The check's projection, re-check's worst case included."""
    spent_usd: float
    """The checks of the last 24 h (the per-day cap's spend so far)."""

    def text(self) -> str:
        if self.cap == "check":
            return (
                f"skipped for cost: the check would cost up to ${self.projected_usd:.6f}, over "
                f"--max-cost-per-check ${self.cap_usd:g}"
            )
        return (
            f"skipped for cost: ${self.spent_usd:.6f} spent in the last 24 h + up to "
            f"${self.projected_usd:.6f} for this check is over --max-cost-per-day ${self.cap_usd:g}"
        )


def history(store: Store, name: str, now: float) -> tuple[float, dict[str, float]]:
    """(the spend of the checks begun in the last 24 h of the watch's clock, each endpoint's
    highest priced call in its recent checks)."""
    checks = [c for c in store.watch_checks(name) if c.status != SKIPPED]
    today = [c.seq for c in checks if now - DAY_S < c.started_at <= now]
    spent = sum(r.cost_usd or 0.0 for r in actual(store, check_runs(store, name, today)).values())
    recent = [c.seq for c in checks[-RECENT_CHECKS:]]
    return spent, _per_call(store, check_runs(store, name, recent))


def gate(
    store: Store,
    name: str,
    lineup: Lineup,
    settings: WatchSettings,
    seq: int,
    now: float,
    caps: CostCaps,
) -> CostStop | None:
    """The cap check `seq` would pass (it is then not made), or None."""
    if caps.per_check_usd is None and caps.per_day_usd is None:
        return None
    spent, per_call = history(store, name, now)
    rows = project(lineup, settings, seq, per_call)
    projected = sum((p.usd or 0.0) + (p.recheck_usd or 0.0) for p in rows)
    if caps.per_check_usd is not None and projected > caps.per_check_usd:
        return CostStop("check", caps.per_check_usd, projected, spent)
    if caps.per_day_usd is not None and spent + projected > caps.per_day_usd:
        return CostStop("day", caps.per_day_usd, projected, spent)
    return None


def _usd(v: float | None) -> str:
    return "no price" if v is None else f"${v:.6f}"


def cost_lines(
    store: Store,
    name: str,
    lineup: Lineup,
    settings: WatchSettings,
    every: float | None,
    now: float,
    caps: CostCaps,
) -> list[str]:
    """What the next check will cost per endpoint, and per day at `every` seconds (re-checks
    apart); the caps and the last 24 h's spend. Said before the first check and by `status`."""
    spent, per_call = history(store, name, now)
    checks = store.watch_checks(name)
    seq = (checks[-1].seq if checks else 0) + 1
    rows = project(lineup, settings, seq, per_call)
    out = ["projected cost of one check, per endpoint:"]
    out += [f"  {p.text()}" for p in rows]
    if every is not None:
        k = DAY_S / every
        for p in rows:
            usd = None if p.usd is None else p.usd * k
            out.append(
                f"  {p.endpoint} per day ({k:,.4g} checks): {p.calls * k:,.0f} calls, "
                f"<= {(p.prompt_tokens + p.max_tokens) * k:,.0f} tokens, {_usd(usd)} "
                "(re-checks apart)"
            )
    if caps.per_check_usd is not None or caps.per_day_usd is not None:
        per_check = "-" if caps.per_check_usd is None else f"${caps.per_check_usd:g}"
        per_day = "-" if caps.per_day_usd is None else f"${caps.per_day_usd:g}"
        out.append(
            f"cost caps: per check {per_check}, per day {per_day} (spent in the last 24 h: "
            f"${spent:.6f}); an unpriced endpoint adds nothing to them"
        )
    return out
