"""What a reply may hold, checked before use: each field's type, and caps on what would cost memory
(logprob entries, JSON containers, token counts). A violation is that call's `bad_response` or
`too_large`, never another exception."""

from __future__ import annotations

import orjson

from bakeoff.endpoints._errors import classify_error_object
from bakeoff.endpoints._types import CallError, CallResult, ErrorClass, JsonObject, ToolCall

MAX_LOGPROB_ENTRIES = 65_536
"""Logprob entries (one per token) one reply may carry; more is `too_large`."""
MAX_JSON_CONTAINERS = 400_000
"""JSON objects and arrays one body or one stream event may hold (counted by their opening
brackets, strings included, before parsing); a long reply with top-20 logprobs holds ~100,000."""
MAX_TOKEN_COUNT = 100_000_000
"""Usage counts above this (or negative, or not integers) are recorded as invalid."""


class _ToolParts:
    """One streamed tool call, its argument fragments kept apart until the end (appending to one
    string copied it whole on every delta: quadratic in the number of deltas)."""

    __slots__ = ("args", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []

    def call(self) -> ToolCall:
        return ToolCall(id=self.id, name=self.name, arguments="".join(self.args))


def _merge_tool_delta(tools: dict[int, _ToolParts], tc: JsonObject) -> None:
    idx = tc.get("index", len(tools))
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < 10_000:
        raise CallError(
            ErrorClass.bad_response, f"tool call index is not a small integer: {idx!r:.40}"
        )
    cur = tools.get(idx)
    if cur is None:
        cur = tools[idx] = _ToolParts()
    if tc.get("id"):
        cur.id = _label(tc["id"])
    fn = _dict(tc.get("function"), "tool call function")
    name = _text(fn.get("name"), "tool call name")
    if name:
        # some servers repeat the whole name in every delta, others stream it in pieces
        cur.name = (cur.name or "") + name if cur.name and cur.name != name else name
        if len(cur.name) > 1000:
            raise CallError(ErrorClass.bad_response, "a tool call name of over 1,000 characters")
    args = fn.get("arguments")
    if args:
        cur.args.append(_arguments(args))


def _logprobs(v: object, have: int) -> list[JsonObject]:
    """Chat logprob entries (one object per token), `have` already held: capped, objects only."""
    entries = _list(v, "logprobs.content")
    if have + len(entries) > MAX_LOGPROB_ENTRIES:
        raise CallError(ErrorClass.too_large, f"more than {MAX_LOGPROB_ENTRIES:,} logprob entries")
    objects = [e for e in entries if isinstance(e, dict)]
    if len(objects) != len(entries):
        raise CallError(ErrorClass.bad_response, "a logprobs.content entry is not an object")
    return objects


def _completion_logprobs(lp: JsonObject) -> JsonObject:
    """A completions `logprobs` object: its per-token arrays capped."""
    for key, value in lp.items():
        if isinstance(value, list) and len(value) > MAX_LOGPROB_ENTRIES:
            raise CallError(ErrorClass.too_large, f"logprobs.{key[:40]} has over 65,536 entries")
    return lp


def _objects(raw: bytes | bytearray) -> None:
    """Refuse, before parsing, JSON that would build more than MAX_JSON_CONTAINERS objects and
    arrays: 16 MB of `{}` become 5 million dicts, 50 times the bytes in memory."""
    n = raw.count(b"{") + raw.count(b"[")
    if n > MAX_JSON_CONTAINERS:
        raise CallError(
            ErrorClass.too_large,
            f"the reply holds {n:,} JSON objects and arrays (more than {MAX_JSON_CONTAINERS:,})",
        )


def _dict(v: object, what: str) -> JsonObject:
    """A JSON object where one is expected (missing or null: empty)."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not an object")
    return v


def _list(v: object, what: str) -> list[object]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not an array")
    return v


def _text(v: object, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise CallError(ErrorClass.bad_response, f"{what} is {_kind(v)}, not a string")
    return v


def _label(v: object) -> str | None:
    """A short field kept as text whatever its type (model, provider, id, finish_reason)."""
    if v is None:
        return None
    return (v if isinstance(v, str) else orjson.dumps(v).decode("utf-8", "replace"))[:200]


def _arguments(v: object) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _kind(v: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def _count(v: object) -> int | None:
    """A usage count as it may be stored: a non-negative integer of sane size, else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, float) and not v.is_integer():
        return None
    return int(v) if 0 <= v <= MAX_TOKEN_COUNT else None


MAX_COST_USD = 1e6
"""A reported cost of one call above this is not believed (a field of the wrong scale)."""


def _cost(v: object) -> float | None:
    """A reported cost as it may be stored: a finite, non-negative number of sane size."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if 0 <= v <= MAX_COST_USD else None  # NaN fails both comparisons


def usage_of(obj: JsonObject) -> object:
    """The usage object of a reply or stream event: `usage`, or Groq's `x_groq.usage`."""
    if obj.get("usage"):
        return obj["usage"]
    x = obj.get("x_groq")
    return x.get("usage") if isinstance(x, dict) else None


def _apply_usage(result: CallResult, usage: object, n_token_chunks: int | None) -> None:
    """The endpoint's usage when its counts are valid; otherwise `usage_source` says `invalid` and,
    in a stream, the token-bearing chunks are counted instead. The cost the endpoint reports
    (`usage.cost`, OpenRouter's) and the prompt tokens it served from its cache
    (`prompt_tokens_details.cached_tokens`) are kept when they are sane numbers."""
    if isinstance(usage, dict):
        result.cost_usd = _cost(usage.get("cost"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            result.cached_prompt_tokens = _count(details.get("cached_tokens"))
    reported = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if reported is not None:
        assert isinstance(usage, dict)
        completion = _count(reported)
        if completion is not None:
            result.prompt_tokens = _count(usage.get("prompt_tokens"))
            result.completion_tokens = completion
            result.usage_source = "usage"
            return
        result.usage_source = "invalid"
        result.prompt_tokens = _count(usage.get("prompt_tokens"))
        if n_token_chunks is not None:
            result.completion_tokens = n_token_chunks
        return
    if n_token_chunks is not None:
        result.completion_tokens = n_token_chunks
        result.usage_source = "chunks"


def _json_object(raw: bytes | bytearray, what: str, malformed: str) -> JsonObject:
    """`raw` (a body, or one stream event: `what`) parsed as a JSON object; an error object in it
    is that error."""
    try:
        if len(raw) > MAX_JSON_CONTAINERS:  # shorter, it cannot hold more brackets than the cap
            _objects(raw)
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CallError(
            ErrorClass.bad_response, malformed, body=raw[:500].decode("utf-8", "replace")
        ) from None
    if not isinstance(obj, dict):
        raise CallError(ErrorClass.bad_response, f"{what} is not a JSON object")
    if obj.get("error"):
        raise classify_error_object(obj["error"])
    return obj
