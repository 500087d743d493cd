"""What each call cost, so a run's bill can be reconciled with the provider's.

A call's cost is the endpoint's own figure when it reports one (`usage.cost`, as OpenRouter sends
it), else its tokens at the lineup's `price` — prompt tokens the endpoint served from its prompt
cache at `price.cached_input_per_m` when given — else, for a hosted preset, its tokens at the
price `genai-prices` lists for the provider and model (`list`: the package's bundled snapshot,
never fetched; `run.list_prices: false` turns it off). A replay from bakeoff's response cache was not
billed: it costs 0 and says `cached`, never passing for a free call. A call with neither figure is
unpriced (None), and summaries count those rather than treat them as free.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from bakeoff.endpoints import CallResult
from bakeoff.lineups import Endpoint, Lineup, purposes
from bakeoff.runs._results import Bill, RegimeCost
from bakeoff.store import Row, SideCallRecord


def price_call(
    ep: Endpoint, result: CallResult, *, cached: bool = False, list_prices: bool = False
) -> tuple[float | None, str | None]:
    """(cost in USD, its source) of one successful call."""
    if cached:
        return 0.0, "cached"
    if result.cost_usd is not None:
        return result.cost_usd, "usage"
    price = ep.price
    if result.usage_source != "usage" or result.prompt_tokens is None:
        return None, None  # counted chunks or broken usage: a partial count is no bill
    if price is None:
        listed = list_price(ep, result) if list_prices else None
        return (listed, "list") if listed is not None else (None, None)
    prompt = result.prompt_tokens or 0
    from_cache = min(result.cached_prompt_tokens or 0, prompt)
    cached_rate = (
        price.input_per_m if price.cached_input_per_m is None else price.cached_input_per_m
    )
    cost = (
        (prompt - from_cache) * price.input_per_m
        + from_cache * cached_rate
        + (result.completion_tokens or 0) * price.output_per_m
    ) / 1e6
    return cost, "price"


LISTED_PROVIDERS = frozenset({"openai", "openrouter", "together", "fireworks", "groq"})
"""Presets whose prices `genai-prices` lists under the same provider id (DeepInfra it does not)."""


@functools.cache
def _lookup(provider: str, model: str) -> Any:
    """genai-prices' price of a model at a provider, or None (unknown model, or not installed)."""
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:
        return None
    try:
        snapshot = data_snapshot.get_snapshot()
        snapshot.calc(genai_prices.Usage(input_tokens=1), model, provider, None, None, None)
    except (LookupError, ValueError):
        return None
    return snapshot


@functools.cache
def _default_base_url(provider: str) -> str | None:
    """The preset's own base URL (looked up once: the plugin hook runs per lookup)."""
    from bakeoff.plugins import get_provider

    return getattr(get_provider(provider), "default_base_url", None)


def list_price(ep: Endpoint, result: CallResult) -> float | None:
    """The call's tokens at the listed price of its provider and model, or None."""
    if ep.provider not in LISTED_PROVIDERS:
        return None
    if ep.base_url != _default_base_url(ep.provider):
        return None  # a server of the user's own: the provider's price is not its price
    snapshot = _lookup(ep.provider, ep.model)
    if snapshot is None:
        return None
    import genai_prices

    prompt = result.prompt_tokens or 0
    usage = genai_prices.Usage(
        input_tokens=prompt,
        cache_read_tokens=min(result.cached_prompt_tokens or 0, prompt),
        output_tokens=result.completion_tokens or 0,
    )
    try:
        calc = snapshot.calc(usage, ep.model, ep.provider, None, None, None)
    except (LookupError, ValueError):
        return None
    return float(calc.total_price)


def pinned_slug(ep: Endpoint) -> str | None:
    """The routing slug of the one upstream an endpoint's routing allows (`only` or `order` with
    one entry and `allow_fallbacks: false`); None when several may serve."""
    r = ep.routing
    if r is None:
        return None
    if r.only and len(r.only) == 1:
        return r.only[0]
    if r.order and len(r.order) == 1 and r.allow_fallbacks is False and not r.only:
        return r.order[0]
    return None


def pinned_upstream(ep: Endpoint) -> str | None:
    """The one upstream an endpoint's routing allows (`pinned_slug`), by the name replies give it
    when the lineup knows it (`claims.upstream_name`), else by its routing slug; None when several
    may serve."""
    slug = pinned_slug(ep)
    if slug is None:
        return None
    return ep.claims.upstream_name if ep.claims and ep.claims.upstream_name else slug


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def served_elsewhere(pinned: str | None, upstream: str | None) -> bool:
    """Whether a call pinned to `pinned` says another upstream served it. `pinned` is the
    upstream's reply name (compared exactly, case and punctuation aside) or a routing slug
    (`novita/fp8`: its provider part must begin the reply's name, as in `NovitaAI`)."""
    if not pinned or not upstream:
        return False
    served = _norm(upstream)
    if "/" not in pinned and _norm(pinned) == served:
        return False
    slug = _norm(pinned.split("/")[0])
    return not (slug and served.startswith(slug))


def side_call_record(
    run_id: str, ep: Endpoint, purpose: str, started: float, out: Any, list_prices: bool
) -> SideCallRecord:
    """The bill of a probe's or judge's call (`out`: the policy's `Outcome`), priced like any."""
    res = out.result
    cost, source = price_call(ep, res, list_prices=list_prices) if res is not None else (None, None)
    return SideCallRecord(
        run_id=run_id,
        endpoint=ep.name,
        purpose=purpose,
        started_at=started,
        status="ok" if res is not None else "error",
        error_class=str(out.error.error_class) if out.error is not None else None,
        prompt_tokens=res.prompt_tokens if res else None,
        cached_tokens=res.cached_prompt_tokens if res else None,
        completion_tokens=res.completion_tokens if res else None,
        cost_usd=cost,
        cost_source=source,
        upstream=res.upstream if res else None,
    )


def bill_of(calls: list[Row], side: list[Row]) -> Bill:
    """What the endpoint's calls cost (`Bill`): stored suite and audit calls, and the bills of its
    probe and judge calls, summed as stored — so the total is the sum of the stored costs."""
    by_purpose: dict[str, float] = defaultdict(float)
    sources: Counter[str] = Counter()
    n = unpriced = cached_tokens = 0
    for c, purpose in [
        *(
            (c, "audit" if c["suite"].startswith(purposes.FIDELITY_PREFIX) else "suite")
            for c in calls
        ),
        *((c, c["purpose"]) for c in side),
    ]:
        if c["status"] != "ok":
            continue
        n += 1
        cached_tokens += c["cached_tokens"] or 0
        if c["cost_usd"] is None:
            unpriced += 1
            continue
        sources[c["cost_source"]] += 1
        by_purpose[purpose] += c["cost_usd"]
    # replays from bakeoff's cache cost 0 but are no figure of what the endpoint charges
    total = sum(by_purpose.values()) if sources.keys() - {"cached"} else None
    return Bill(
        total_usd=None if total is None else round(total, 6),
        by_purpose={k: round(v, 6) for k, v in sorted(by_purpose.items())},
        calls=n,
        sources=dict(sorted(sources.items())),
        unpriced=unpriced,
        cached_prompt_tokens=cached_tokens,
    )


SCORER_PURPOSE = "scorer"
"""The purpose of a reference scorer's scoring calls' bills (`side_calls`): the audit's `scorer`
row of costs."""


def regime_costs(calls: list[Row], side: Iterable[Row] = ()) -> dict[str, RegimeCost]:
    """One endpoint's audit calls summed per regime (`fidelity.greedy` → `greedy`), from the stored
    calls alone: calls (failed ones included), tokens of the answered ones, and their cost — None
    where no answered call could be priced, so an unknown price is never shown as 0 $. A replay
    from bakeoff's response cache was not billed: counted apart (`cached`), adding nothing. The
    bills of its reference-scoring calls (`side`, purpose `scorer`) are the row `scorer`."""
    of: dict[str, list[Any]] = defaultdict(list)
    for c in calls:
        if c["suite"].startswith(purposes.FIDELITY_PREFIX):
            of[c["suite"].removeprefix(purposes.FIDELITY_PREFIX)].append(c)
    for c in side:
        if c["purpose"] == SCORER_PURPOSE:
            of[SCORER_PURPOSE].append({**dict(c), "cached": 0})
    out = {}
    for regime, rows in sorted(of.items()):
        ok = [c for c in rows if c["status"] == "ok"]
        live = [c for c in ok if not c["cached"]]
        priced = [c["cost_usd"] for c in live if c["cost_usd"] is not None]
        out[regime] = RegimeCost(
            calls=len(rows),
            failed=len(rows) - len(ok),
            cached=sum(1 for c in ok if c["cached"]),
            prompt_tokens=None
            if all(c["prompt_tokens"] is None for c in ok)
            else sum(c["prompt_tokens"] or 0 for c in ok),
            completion_tokens=sum(c["completion_tokens"] or 0 for c in ok),
            cost_usd=round(sum(priced), 8) if priced else None,
            unpriced=len(live) - len(priced),
        )
    return out


def audit_costs(calls: list[Row], side: Iterable[Row] = ()) -> dict[str, dict[str, RegimeCost]]:
    """Every endpoint's audit calls per regime (`regime_costs`; `side`: the run's side calls, of
    which the scorer's are its `scorer` row), endpoints with none left out."""
    of: dict[str, list[Row]] = defaultdict(list)
    side_of: dict[str, list[Row]] = defaultdict(list)
    for c in calls:
        of[c["endpoint"]].append(c)
    for c in side:
        side_of[c["endpoint"]].append(c)
    return {
        name: costs
        for name in dict.fromkeys([*of, *side_of])
        if (costs := regime_costs(of[name], side_of[name]))
    }


def upstream_warnings(
    lineup: Lineup, all_of: dict[str, list[Any]], side_of: dict[str, list[Any]]
) -> list[str]:
    """One line per endpoint pinned to an upstream that had calls served by another."""
    out = []
    for ep in lineup.endpoints:
        pinned = pinned_upstream(ep)
        wrong = Counter(
            c["upstream"]
            for c in (*all_of[ep.name], *side_of[ep.name])
            if served_elsewhere(pinned, c["upstream"])
        )
        if wrong:
            out.append(
                f"{ep.name}: {sum(wrong.values())} calls served by another upstream than the "
                f"pinned {pinned!r} ({', '.join(f'{k}: {v}' for k, v in wrong.most_common())})"
            )
    return out


def total(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 6) if known else None
