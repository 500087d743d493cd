"""What each call cost, so a run's bill can be reconciled with the provider's.

A call's cost is the endpoint's own figure when it reports one (`usage.cost`, as OpenRouter sends
it), else its tokens at the lineup's `price` — prompt tokens the endpoint served from its prompt
cache at `price.cached_input_per_m` when given. A replay from bakeoff's response cache was not
billed: it costs 0 and says `cached`, never passing for a free call. A call with neither figure is
unpriced (None), and summaries count those rather than treat them as free.
"""

from __future__ import annotations

import re

from bakeoff.endpoints import CallResult
from bakeoff.lineups import Endpoint

COST_SOURCES = ("usage", "price", "cached")


def price_call(
    ep: Endpoint, result: CallResult, *, cached: bool = False
) -> tuple[float | None, str | None]:
    """(cost in USD, its source) of one successful call."""
    if cached:
        return 0.0, "cached"
    if result.cost_usd is not None:
        return result.cost_usd, "usage"
    price = ep.price
    if price is None or result.usage_source == "none":
        return None, None
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


def pinned_upstream(ep: Endpoint) -> str | None:
    """The one upstream an endpoint's routing allows (`only` or `order` with
    `allow_fallbacks: false`), else None."""
    r = ep.routing
    if r is None:
        return None
    if r.only and len(r.only) == 1:
        return r.only[0]
    if r.order and r.allow_fallbacks is False:
        return r.order[0]
    return None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.split("/")[0].lower())


def served_elsewhere(pinned: str | None, upstream: str | None) -> bool:
    """Whether a call pinned to `pinned` (a routing slug such as `deepinfra/fp8`) says another
    upstream served it (the reply's display name, such as `DeepInfra`)."""
    if not pinned or not upstream:
        return False
    return _norm(pinned) != _norm(upstream)
