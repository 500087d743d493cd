"""Capability probes: what an endpoint really does, whatever its vendor claims.

Each probe is a few small calls; the result is one row of the capability matrix:
- `context`: the largest prompt the endpoint accepts, found by doubling then bisecting the prompt
  size (`max_tokens: 1`), with `usage.prompt_tokens` at each size. If the reported prompt tokens stop
  growing while bigger prompts are still accepted, the endpoint silently truncates (and a needle at
  the start of the prompt is asked back as a second witness).
- `max_output`: asked for `output_tokens` tokens of a long answer: the tokens produced and the finish
  reason (a `length` stop well below what was asked is an output cap).
- `stream_usage`, `logprobs` / `top_logprobs`, `tools`, `parallel_tools`, `json_mode`,
  `json_schema`: accepted (no 4xx/5xx) and honoured (the thing asked for came back).
- `seed_determinism`: three greedy calls with the same seed give the same text.

A result records every refusal with its error class, so the row can tell a feature the endpoint
refused (a 4xx that names the request) from one it could not be asked about (a 5xx, a timeout, a
401); a feature whose fields the provider's preset strips is not asked at all (`not_tested`).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bakeoff.endpoints import Caller, CallError, CallRequest, CallResult
from bakeoff.lineups import purposes
from bakeoff.store import (
    ContextPoint,
    ContextProbe,
    Feature,
    FeatureProbe,
    Needle,
    OutputProbe,
    ProbeResult,
    Truncation,
)
from bakeoff.suites.long_context import build_haystack

if TYPE_CHECKING:
    from bakeoff.runs import EndpointHandle, EndpointSession

NEEDLE = "The secret code is {code}."


@dataclass
class ProbeOptions:
    max_context: int | None = None
    """Largest prompt to try, in tokens (default: 1.25 x the claimed context, else 16384)."""
    output_tokens: int = 512
    bisect_steps: int = 6


async def _try(client: Caller, req: CallRequest) -> tuple[CallResult | None, CallError | None]:
    try:
        return await client.call(req), None
    except CallError as e:
        return None, e


def _chat(content: str, **params: Any) -> CallRequest:
    return CallRequest(messages=[{"role": "user", "content": content}], params=params, stream=False)


def _err(e: CallError | None) -> str | None:
    return None if e is None else f"{e.error_class}: {e.detail}"


SIZE_REFUSALS = ("context_overflow", "bad_request", "too_large")
"""Error classes by which an endpoint refuses a prompt for its size. Any other failure (a 5xx, a
timeout, a 401, a 402) says nothing about the size: the context search stops there, below the
limit."""

FEATURE_FIELDS: dict[Feature, tuple[str, ...]] = {
    "stream_usage": ("stream_options",),
    "logprobs": ("logprobs", "top_logprobs"),
    "tools": ("tools",),
    "parallel_tools": ("tools", "parallel_tool_calls"),
    "json_mode": ("response_format",),
    "json_schema": ("response_format",),
    "seed_determinism": ("seed",),
}
"""The body fields each feature's probe asks with: one a preset strips leaves it untested."""


async def probe_context(client: Caller, claimed: int | None, opts: ProbeOptions) -> ContextProbe:
    limit = opts.max_context or (int(claimed * 1.25) if claimed else 16384)
    rng = random.Random(0)
    code = rng.randint(1000, 9999)

    def prompt(tokens: int) -> str:
        body = build_haystack(random.Random(tokens), max(8, tokens - 40), [])
        return (
            f"{NEEDLE.format(code=code)}\n{body}\nWhat is the secret code? Reply with the number."
        )

    points: list[ContextPoint] = []
    stopped: list[str] = []

    async def attempt(tokens: int) -> bool | None:
        """Accepted (True), refused for its size (False), or failed otherwise (None)."""
        res, err = await _try(client, _chat(prompt(tokens), max_tokens=1, **purposes.GREEDY))
        points.append(
            {
                "sent_tokens_est": tokens,
                "accepted": res is not None,
                "prompt_tokens": None if res is None else res.prompt_tokens,
                "error": _err(err),
            }
        )
        if err is not None and (str(err.error_class) not in SIZE_REFUSALS or err.status == 402):
            stopped.append(_err(err) or "")
            return None
        return res is not None

    accepted, rejected = await _search(attempt, limit, opts.bisect_steps)
    # (sent, counted) of the accepted prompts the endpoint counted
    ok = sorted(
        (p["sent_tokens_est"], n) for p in points if p["accepted"] and (n := p["prompt_tokens"])
    )
    largest = max((n for _, n in ok), default=None)
    # silent truncation: prompt tokens stop growing while larger prompts are accepted
    truncation: Truncation | None = None
    for (sent_a, got_a), (sent_b, got_b) in itertools.pairwise(ok):
        grew = got_b / max(got_a, 1)
        asked = sent_b / sent_a
        if asked >= 1.5 and grew < 1 + 0.25 * (asked - 1):
            truncation = {
                "at_prompt_tokens": got_a,
                "why": f"sent ~{sent_b} tokens, usage says {got_b} (vs {got_a} for ~{sent_a})",
            }
            break
    needle: Needle | None = None
    if accepted is not None and accepted >= 512:
        res, _ = await _try(client, _chat(prompt(accepted), max_tokens=16, **purposes.GREEDY))
        if res is not None:
            needle = {"tokens_est": accepted, "found": str(code) in res.text}
    return {
        "claimed": claimed,
        "largest_accepted_est": accepted,
        "largest_prompt_tokens": largest,
        "first_rejected_est": rejected if accepted is None or rejected is None else None,
        "limit_reached": rejected is not None,
        "stopped_by": stopped[0] if stopped else None,
        "limit_tried": limit,
        "silent_truncation": truncation,
        "needle_at_start": needle,
        "points": points,
    }


async def _search(
    attempt: Callable[[int], Awaitable[bool | None]], limit: int, bisect_steps: int
) -> tuple[int | None, int | None]:
    """The context search: double from 256 tokens up to `limit`, then bisect between the last size
    accepted and the first refused. (largest accepted, smallest refused); an attempt that failed
    for another reason than size (None) ends the search where it is."""
    sizes = []
    size = 256
    while size < limit:
        sizes.append(size)
        size *= 2
    sizes.append(limit)
    accepted, rejected = None, None
    for size in sizes:
        got = await attempt(size)
        if got is None:
            break
        if got:
            accepted = size
        else:
            rejected = size
            break
    if accepted is not None and rejected is not None:
        lo, hi = accepted, rejected
        for _ in range(bisect_steps):
            mid = (lo + hi) // 2
            if mid in (lo, hi):
                break
            got = await attempt(mid)
            if got is None:
                break
            if got:
                lo = mid
            else:
                hi = mid
        accepted = lo
    return accepted, rejected


async def probe_output(client: Caller, n: int) -> OutputProbe:
    req = _chat(
        "Count from 1 to 2000, one number per line, with no other text.",
        max_tokens=n,
        **purposes.GREEDY,
    )
    res, err = await _try(client, req)
    if res is None:
        return {"asked": n, "error": _err(err)}
    produced = res.completion_tokens
    capped = res.finish_reason == "length" and produced is not None and produced < 0.9 * n
    return {
        "asked": n,
        "produced": produced,
        "finish_reason": res.finish_reason,
        "honoured": res.finish_reason == "length" and produced is not None and produced >= 0.9 * n,
        "capped_at": produced if capped else None,
    }


_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


_CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _feature_requests() -> list[tuple[Feature, CallRequest, Callable[[CallResult], bool]]]:
    """(feature, the request that asks for it, whether a reply honoured it), in probing order;
    `logprobs` also yields `top_logprobs`."""
    return [
        (
            "stream_usage",
            CallRequest(
                messages=[{"role": "user", "content": "Say hello."}],
                params={"max_tokens": 8},
                stream=True,
            ),
            lambda r: r.usage_source == "usage",
        ),
        (
            "logprobs",
            _chat("Say hello.", max_tokens=4, logprobs=True, top_logprobs=3),
            lambda r: bool(r.logprobs),
        ),
        (
            "tools",
            _chat("What is the weather in Lisbon? Use the tool.", tools=[_TOOL], max_tokens=64),
            lambda r: bool(r.tool_calls),
        ),
        (
            "parallel_tools",
            _chat(
                "What is the weather in Lisbon and in Oslo? Call the tool once per city, in "
                "parallel.",
                tools=[_TOOL],
                parallel_tool_calls=True,
                max_tokens=96,
            ),
            lambda r: len(r.tool_calls) >= 2,
        ),
        (
            "json_mode",
            _chat(
                "Give a JSON object with a key 'city' set to Lisbon.",
                response_format={"type": "json_object"},
                max_tokens=48,
            ),
            lambda r: _is_json(r.text),
        ),
        (
            "json_schema",
            _chat(
                "Give the city Lisbon as JSON.",
                max_tokens=48,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "c", "schema": _CITY_SCHEMA},
                },
            ),
            lambda r: _is_json(r.text),
        ),
    ]


def _stripped(name: Feature, strips: frozenset[str]) -> FeatureProbe | None:
    """The result of a feature the preset strips the fields of: not asked (a reply to a body
    without them says nothing of the feature)."""
    gone = sorted(set(FEATURE_FIELDS.get(name, ())) & strips)
    return {"not_tested": f"the preset strips {', '.join(gone)}"} if gone else None


async def probe_features(client: Caller, strips: frozenset[str] = frozenset()) -> ProbeResult:
    """Per feature: was the request accepted, and did the reply honour it (with the error of a
    refused one); `strips`: the body fields the provider's preset removes (those features are
    not asked)."""
    out: ProbeResult = {}
    for name, req, honoured in _feature_requests():
        if (skip := _stripped(name, strips)) is not None:
            out[name] = skip
            if name == "logprobs":
                out["top_logprobs"] = skip
            continue
        res, err = await _try(client, req)
        # what a refusal said: whether it names the feature (see `capability_row`)
        said = None if err is None else (err.body or "")[:300]
        out[name] = {
            "accepted": res is not None,
            "honoured": bool(res is not None and honoured(res)),
            "error": _err(err),
            "said": said,
        }
        if name == "logprobs":
            lp = (res.logprobs or []) if res else []
            out["top_logprobs"] = {
                "accepted": res is not None,
                "honoured": bool(lp and any(t.get("top_logprobs") for t in lp)),
                "error": _err(err),
                "said": said,
            }
    if (skip := _stripped("seed_determinism", strips)) is not None:
        out["seed_determinism"] = skip
        return out
    texts: list[str] = []
    errors: list[str | None] = []
    for _ in range(3):
        res, err = await _try(
            client,
            _chat(
                "Write a short sentence about the sea.", max_tokens=24, **purposes.GREEDY, seed=7
            ),
        )
        if res is not None:
            texts.append(res.text)
        else:
            errors.append(_err(err))
    out["seed_determinism"] = {
        "accepted": len(texts) == 3,
        "honoured": len(texts) == 3 and len(set(texts)) == 1,
        "error": errors[0] if errors else None,
        "errors": errors,
    }
    return out


def _is_json(text: str) -> bool:
    try:
        json.loads(text.strip())
    except ValueError:
        return False
    return True


async def probe_endpoint(
    client: Caller,
    claimed_context: int | None,
    opts: ProbeOptions | None = None,
    strips: frozenset[str] = frozenset(),
) -> ProbeResult:
    opts = opts or ProbeOptions()
    features = await probe_features(client, strips)
    result: ProbeResult = {
        "context": await probe_context(client, claimed_context, opts),
        "max_output": await probe_output(client, opts.output_tokens),
    }
    result.update(features)
    return result


async def run_probes(
    session: EndpointSession,
    opts: ProbeOptions | None = None,
    only_missing: bool = True,
    max_context_cap: int | None = None,
) -> dict[str, ProbeResult]:
    """Probe every endpoint of a started `EndpointSession` at once; store each row under the
    session's run id (a resumed run keeps the rows it already has). A probe that fails in an
    unexpected way is stored as that endpoint's error; it never stops the run."""
    import asyncio

    from bakeoff.runs import claimed_context

    store = session.store
    have = store.probes(session.run_id) if only_missing else {}

    async def one(name: str, handle: EndpointHandle) -> None:
        if name in have:
            return
        o = opts or ProbeOptions()
        claim = claimed_context(handle.endpoint)
        if max_context_cap is not None and o.max_context is None:
            want = int(claim * 1.25) if claim else 16384
            o = ProbeOptions(
                max_context=min(want, max_context_cap),
                output_tokens=o.output_tokens,
                bisect_steps=o.bisect_steps,
            )
        result: ProbeResult
        try:
            result = await probe_endpoint(  # limits, retries, bill
                handle.policy.billed("probe"), claim, o, frozenset(handle.provider.drops)
            )
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        store.put_probe(session.run_id, name, result)

    await asyncio.gather(*(one(n, h) for n, h in session.handles.items()))
    return store.probes(session.run_id)
