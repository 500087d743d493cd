"""Lineups written from what an API lists: a model's upstreams on OpenRouter
(`GET {base}/models/{author}/{slug}/endpoints`), one endpoint per upstream, pinned to it; or the
models of any OpenAI-compatible server or gateway (`GET {base}/models`), one endpoint per model.

`bakeoff lineup openrouter MODEL` and `bakeoff lineup models BASE_URL` print or write the YAML;
the lineup is validated before it is written, so what is written loads.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

from bakeoff.endpoints import open_session
from bakeoff.lineups import LineupError, parse_lineup

OPENROUTER = "https://openrouter.ai/api/v1"
MAX_LISTING_BYTES = 8_000_000
MAX_ENDPOINTS = 500
"""Endpoints a generated lineup may hold (a listing of more is cut, and said)."""
MAX_CLAIM = 100_000_000
AUDIT_BUDGET = 70
"""Greedy calls per upstream a written lineup's audit makes at most: at 0 confident divergences
68 let it say "same within 5%" (`same_within: 0.05`), as the local lineup's does."""


class DiscoveryError(Exception):
    """The listing could not be had or read; the message says which and why."""


@dataclass(frozen=True)
class Upstream:
    """One upstream serving a model on OpenRouter, as its listing claims."""

    name: str
    """Display name (`DeepInfra`): what a reply's `provider` field says."""
    tag: str
    """Routing slug (`deepinfra/fp8`): what `provider.order` / `only` take."""
    quantization: str | None
    context_length: int | None
    max_completion_tokens: int | None
    prompt_per_m: float | None
    completion_per_m: float | None
    cache_read_per_m: float | None
    supported_parameters: tuple[str, ...]


async def _get_json(url: str, api_key: str | None, timeout: float) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with (
            open_session(total=timeout) as session,
            session.get(url, headers=headers) as resp,
        ):
            status = resp.status
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65_536):
                body += chunk
                if len(body) > MAX_LISTING_BYTES:
                    break
    except (aiohttp.ClientError, TimeoutError) as e:
        raise DiscoveryError(f"GET {url}: {type(e).__name__}: {str(e)[:200]}") from None
    if len(body) > MAX_LISTING_BYTES:
        raise DiscoveryError(f"GET {url}: the listing passed {MAX_LISTING_BYTES:,} bytes")
    text = body[:300].decode("utf-8", "replace")
    if api_key:  # a server that echoes the request must not print the key
        text = text.replace(api_key, "***")
    if status in (401, 403):
        raise DiscoveryError(f"GET {url}: HTTP {status}: the key was refused ({text})")
    if status == 404 and "/v1" not in urlsplit(url).path:
        raise DiscoveryError(
            f"GET {url}: HTTP 404 ({text}); OpenAI-compatible servers serve under /v1: "
            "give the base URL with it (http://host:port/v1)"
        )
    if status != 200:
        raise DiscoveryError(f"GET {url}: HTTP {status} ({text})")
    try:
        import orjson

        return orjson.loads(body)
    except ValueError:
        raise DiscoveryError(f"GET {url}: the listing is not JSON ({text[:80]!r})") from None


def _per_m(v: Any) -> float | None:
    """OpenRouter's per-token price string → $ per million tokens."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x * 1e6, 6) if 0 <= x < 1 else None


def _int(v: Any) -> int | None:
    """A claimed size: a positive number of sane size, else None (not believed)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_CLAIM:
        return None
    return int(v)


async def openrouter_upstreams(
    model: str, *, base_url: str = OPENROUTER, api_key: str | None = None, timeout: float = 20.0
) -> list[Upstream]:
    """The upstreams OpenRouter lists for `model` (`author/slug`)."""
    if not re.fullmatch(r"[\w.\-]+/[\w.\-:]+", model):
        raise DiscoveryError(f"{model!r}: an OpenRouter model id is author/slug")
    data = await _get_json(f"{base_url.rstrip('/')}/models/{model}/endpoints", api_key, timeout)
    listing = data.get("data") if isinstance(data, dict) else None
    rows = listing.get("endpoints") if isinstance(listing, dict) else None
    if not isinstance(rows, list):
        raise DiscoveryError(f"{model}: the listing has no `data.endpoints` list")
    out = []
    for row in rows:
        if not isinstance(row, dict) or not row.get("tag") or not row.get("provider_name"):
            continue
        given = row.get("pricing")
        pricing: dict[str, Any] = given if isinstance(given, dict) else {}
        params = row.get("supported_parameters")
        out.append(
            Upstream(
                name=str(row["provider_name"])[:100],
                tag=str(row["tag"])[:100],
                quantization=str(row["quantization"])[:40] if row.get("quantization") else None,
                context_length=_int(row.get("context_length")),
                max_completion_tokens=_int(row.get("max_completion_tokens")),
                prompt_per_m=_per_m(pricing.get("prompt")),
                completion_per_m=_per_m(pricing.get("completion")),
                cache_read_per_m=_per_m(pricing.get("input_cache_read")),
                supported_parameters=tuple(str(p) for p in params)
                if isinstance(params, list)
                else (),
            )
        )
    if not out:
        raise DiscoveryError(f"{model}: OpenRouter lists no upstream for it")
    return out


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-.").lower()
    return s or "endpoint"


def _unique(names: list[str]) -> list[str]:
    """The names, each made unique against every name already taken (`a`, `a-2`, `a-3`, ...)."""
    taken: set[str] = set()
    out = []
    for n in names:
        name, k = n, 1
        while name in taken:
            k += 1
            name = f"{n}-{k}"
        taken.add(name)
        out.append(name)
    return out


def _dump(doc: dict[str, Any], header: str) -> str:
    text = header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    try:
        parse_lineup(text, "<generated lineup>")  # what is written loads
    except LineupError as e:
        raise DiscoveryError(f"the listing does not make a valid lineup: {e}") from None
    return text


def _pinned_endpoint(
    name: str, u: Upstream, model: str, base_url: str, key_env: str
) -> dict[str, Any]:
    """One upstream as a lineup endpoint, pinned to it, with its claims and price."""
    ep: dict[str, Any] = {"name": name, "provider": "openrouter", "model": model}
    if base_url.rstrip("/") != OPENROUTER:
        ep["base_url"] = base_url
        ep["api_key_env"] = key_env
    elif key_env != "OPENROUTER_API_KEY":
        ep["api_key_env"] = key_env
    ep["routing"] = {"only": [u.tag], "order": [u.tag], "allow_fallbacks": False}
    if u.context_length:
        ep["context"] = max(u.context_length, 64)
    claims = {
        "upstream_name": u.name,
        "quantization": u.quantization,
        "max_output_tokens": u.max_completion_tokens,
    }
    if any(v is not None for v in claims.values()):
        ep["claims"] = {k: v for k, v in claims.items() if v is not None}
    if u.prompt_per_m is not None and u.completion_per_m is not None:
        price: dict[str, float] = {
            "input_per_m": u.prompt_per_m,
            "output_per_m": u.completion_per_m,
        }
        if u.cache_read_per_m is not None:
            price["cached_input_per_m"] = u.cache_read_per_m
        ep["price"] = price
    return ep


def openrouter_lineup(
    model: str,
    upstreams: list[Upstream],
    *,
    base_url: str = OPENROUTER,
    key_env: str = "OPENROUTER_API_KEY",
    reference: str | None = None,
    suites: list[str] | None = None,
    audit_budget: int = AUDIT_BUDGET,
) -> str:
    """A lineup with one endpoint per upstream, each pinned to it (`only` + `order`, no
    fallbacks), with its claimed context, quantization, output limit and price. `reference`: the
    tag of the upstream the others are audited against (default: the first one listed at bf16,
    fp16 or fp32, if any); with one, `bakeoff run` audits every other upstream against it (greedy,
    margins from the reference's own top log-probabilities: no scorer, `audit_budget` calls each
    at most). `suites`: None for the default ones, [] for none (the audit alone)."""
    upstreams = upstreams[:MAX_ENDPOINTS]
    names = _unique([_slug(u.tag) for u in upstreams])
    if reference is not None and reference not in {u.tag for u in upstreams}:
        listed = ", ".join(u.tag for u in upstreams)
        raise DiscoveryError(f"--reference {reference!r} is not a listed upstream ({listed})")
    if reference is None:
        full = [u for u in upstreams if (u.quantization or "").lower() in ("bf16", "fp16", "fp32")]
        reference = full[0].tag if full else None
    endpoints = []
    ref_name = None
    for name, u in zip(names, upstreams, strict=True):
        ep = _pinned_endpoint(name, u, model, base_url, key_env)
        endpoints.append(ep)
        if u.tag == reference:
            ref_name = name
    doc: dict[str, Any] = {}
    if ref_name:
        doc["reference"] = ref_name
    doc["run"] = {"suites": ["arith", "instructions"] if suites is None else suites}
    if ref_name:
        doc["audit"] = {
            "regimes": ["greedy"],
            "budget": audit_budget,
            "batch": 10,
            "max_tokens": 48,
            "same_within": 0.05,
        }
    doc["endpoints"] = endpoints
    ref = next((u for u in upstreams if u.tag == reference), None)
    return _dump(doc, _openrouter_header(model, base_url, ref_name, ref))


def _openrouter_header(
    model: str, base_url: str, ref_name: str | None, ref: Upstream | None
) -> str:
    when = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"{model} on OpenRouter: one endpoint per upstream, pinned to it (no fallbacks).",
        f"Written by `bakeoff lineup openrouter` on {when} from {base_url}; prices and claims",
        "are the listing's. A call served by another upstream is flagged in the summary.",
    ]
    if ref_name is None or ref is None:
        lines.append(
            "No upstream is listed at full precision: set `reference:` to the one you trust."
        )
    else:
        claim = f"claims {ref.quantization}" if ref.quantization else "your choice"
        lines += [
            f"The audit: every other upstream's greedy answers against {ref_name}'s ({claim}), a",
            "divergence counted where the reference was sure of its token by its own top",
            "log-probabilities (no scorer: nothing of the model runs here). It sees another model",
            "and heavy quantization; 8-bit and a routing of few calls are near-invisible in text.",
        ]
        if ref.supported_parameters and "top_logprobs" not in ref.supported_parameters:
            lines.append(
                f"{ref_name} does not list top_logprobs: every divergence would count; choose a "
                "reference that does (--reference)."
            )
    return "".join(f"# {line}\n" for line in lines)


async def gateway_models(
    base_url: str, *, api_key: str | None = None, timeout: float = 20.0
) -> list[str]:
    """The model ids an OpenAI-compatible server lists at `{base_url}/models`."""
    data = await _get_json(f"{base_url.rstrip('/')}/models", api_key, timeout)
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise DiscoveryError(f"{base_url}/models: the listing has no `data` list")
    ids = [str(r["id"])[:200] for r in rows if isinstance(r, dict) and r.get("id")]
    if not ids:
        raise DiscoveryError(f"{base_url}/models lists no model")
    return ids


def gateway_lineup(
    base_url: str,
    models: list[str],
    *,
    provider: str = "openai",
    key_env: str | None = None,
    suites: list[str] | None = None,
) -> str:
    """A lineup with one endpoint per listed model of one server or gateway."""
    models = models[:MAX_ENDPOINTS]
    names = _unique([_slug(m.rsplit("/", 1)[-1]) for m in models])
    endpoints = []
    for name, m in zip(names, models, strict=True):
        ep: dict[str, Any] = {"name": name, "provider": provider, "base_url": base_url, "model": m}
        if key_env:
            ep["api_key_env"] = key_env
        endpoints.append(ep)
    doc = {
        "run": {"suites": ["arith", "instructions"] if suites is None else suites},
        "endpoints": endpoints,
    }
    header = (
        f"# The models {base_url}/models lists, one endpoint each (`bakeoff lineup models`).\n"
        "# Set `reference:` to the endpoint the others should be audited against.\n"
    )
    return _dump(doc, header)
