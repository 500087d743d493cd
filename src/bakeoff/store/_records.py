"""Typed records the store is handed: callers name fields, the store owns the columns."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

import orjson


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


SqlValue = str | int | float | None
"""A value of a table's column."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One finished call (success or its final error), as the `calls` table keeps it. Structured
    fields (`request`, `tool_calls`, `logprobs`, `chunk_ms`) are given as values and stored as
    JSON; `response_raw` is the body text (or the stream's event lines) as received."""

    id: str
    run_id: str
    endpoint: str
    suite: str
    item_id: str
    repeat: int
    status: Literal["ok", "error"]
    n_attempts: int
    cached: bool
    started_at: float
    finished_at: float
    request: Any
    error_class: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    response_raw: str | None = None
    output_text: str | None = None
    reasoning_text: str | None = None
    finish_reason: str | None = None
    tool_calls: list[Any] | None = None
    logprobs: Any = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_source: str | None = None
    upstream: str | None = None
    response_model: str | None = None
    first_byte_ms: float | None = None
    role_ms: float | None = None
    ttft_ms: float | None = None
    last_token_ms: float | None = None
    e2e_ms: float | None = None
    chunk_ms: list[float] | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    """`usage` (the endpoint's own figure), `price` (tokens × the lineup's price), `list` (tokens
    × the genai-prices list), `cached` (a replay from bakeoff's response cache: not billed), or
    None (no figure: unpriced)."""
    pinned_upstream: str | None = None

    def columns(self) -> dict[str, SqlValue]:
        """{column: value} of the `calls` table."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}  # no deep copy of logprobs
        row["cached"] = int(self.cached)
        row["request_json"] = dumps(row.pop("request"))
        tool_calls = row.pop("tool_calls")
        row["tool_calls_json"] = dumps(tool_calls) if tool_calls else None
        logprobs = row.pop("logprobs")
        row["logprobs_json"] = dumps(logprobs) if logprobs is not None else None
        chunks = row.pop("chunk_ms")
        row["chunk_ms_json"] = dumps(chunks) if chunks else None
        return row


@dataclass(frozen=True, slots=True, kw_only=True)
class SideCallRecord:
    """A call a run made that is not one of its suite or audit calls (a capability probe, an LLM
    judge's question): kept for its bill — tokens, cost, who served it — not its text."""

    run_id: str
    endpoint: str
    purpose: str
    started_at: float
    status: Literal["ok", "error"]
    error_class: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    upstream: str | None = None

    def columns(self) -> dict[str, SqlValue]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class PerfRequestRecord:
    """One request of a perf sweep's level, as the `perf_requests` table keeps it (`chunks`: the
    token-bearing chunks' times, stored as JSON)."""

    perf_id: str
    endpoint: str
    level: str
    seq: int
    phase: str
    intended_ms: float | None
    lateness_ms: float | None
    status: str
    error_class: str | None
    first_byte_ms: float | None
    role_ms: float | None
    ttft_ms: float | None
    last_token_ms: float | None
    e2e_ms: float | None
    chunks: list[float]
    prompt_tokens: int | None
    completion_tokens: int | None
    token_source: str | None
    usage_tokens: int | None
    counted_tokens: int | None

    def columns(self) -> dict[str, SqlValue]:
        """{column: value} of the `perf_requests` table."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        chunks = row.pop("chunks")
        row["chunks_json"] = dumps(chunks) if chunks else None
        return row


class JudgeDetail(TypedDict):
    """What a judge answered in both orders of an arena pair."""

    a_first: str
    b_first: str
    choices: list[str | None]
    consistent: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRecord:
    """An arena vote, as the `votes` table keeps it: `left` and `right` are the endpoints shown
    first and second, `voter` is `human` or `judge:<endpoint>`; `id` is set once stored."""

    suite: str
    item_id: str
    repeat: int = 0
    left: str
    right: str
    winner: str
    voter: str
    left_chars: int | None = None
    right_chars: int | None = None
    detail: JudgeDetail | None = None
    id: int | None = None
