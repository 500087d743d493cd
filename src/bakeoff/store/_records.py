"""Typed records the store is handed: callers name fields, the store owns the columns."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, NotRequired, TypedDict, get_args

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


class PerfRecord(TypedDict):
    """One request of a perf sweep's level, as a shard measured it: times in ms from its send,
    `sent_s` and `end_s` in s from the level's start. The `perf_requests` table keeps
    `PERF_COLUMNS` and `chunks`."""

    seq: int
    phase: Literal["warmup", "measure", "cooldown"]
    intended_ms: float | None
    lateness_ms: float | None
    sent_s: float
    status: Literal["ok", "error"]
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
    end_s: float
    itl_ms: NotRequired[float | None]
    """Derived (`per_request`), with `tpot_ms` and `tok_s`."""
    tpot_ms: NotRequired[float | None]
    tok_s: NotRequired[float | None]
    shard: NotRequired[int]
    """The Ray shard that sent it."""


PerfColumn = Literal[
    "seq",
    "phase",
    "intended_ms",
    "lateness_ms",
    "status",
    "error_class",
    "first_byte_ms",
    "role_ms",
    "ttft_ms",
    "last_token_ms",
    "e2e_ms",
    "prompt_tokens",
    "completion_tokens",
    "token_source",
    "usage_tokens",
    "counted_tokens",
]
PERF_COLUMNS: tuple[PerfColumn, ...] = get_args(PerfColumn)
"""The fields of a `PerfRecord` the `perf_requests` table keeps as they are (`chunks` is kept as
`chunks_json`)."""


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


class Attempt(TypedDict):
    """One attempt of a call, as the `attempts` table stores it."""

    n: int
    started_at: float
    """Unix time the attempt was sent."""
    duration_ms: float
    http_status: int | None
    decision: str
    """`ok`, `retry` or `give_up`."""
    error_class: NotRequired[str]
    error_detail: NotRequired[str]
    decision_reason: NotRequired[str]
    wait_s: NotRequired[float]


class ScoreRow(TypedDict):
    """One scorer's judgement of a call, as the `scores` table stores it."""

    scorer: str
    value: float
    passed: bool | None
    detail: str | None
