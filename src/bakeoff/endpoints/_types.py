"""Records that cross the wire boundary: what we ask an endpoint, and what happened."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

JsonObject = dict[str, object]
"""A JSON object exactly as it goes to or comes from the wire (narrowed with isinstance where read)."""


class ErrorClass(StrEnum):
    """Why a call failed. Infrastructure classes are retried; the others are final."""

    auth = "auth"
    """401/403: the key is missing, wrong or not allowed this model."""
    rate_limited = "rate_limited"
    """429 (Retry-After honoured when sent)."""
    server_error = "server_error"
    """5xx from the endpoint or a gateway in front of it."""
    timeout = "timeout"
    """Connect, first-token or mid-stream stall timeout (the detail says which)."""
    connection_error = "connection_error"
    """Connection refused or reset before a response was complete."""
    bad_response = "bad_response"
    """HTML page, malformed JSON or SSE, a field of the wrong type, no choices, stream cut before
    [DONE]."""
    too_large = "too_large"
    """The reply passed the endpoint's `limits` (bytes, one stream line or event): not retried."""
    context_overflow = "context_overflow"
    """The prompt (plus max_tokens) exceeds what the endpoint accepts."""
    content_filter = "content_filter"
    """The endpoint refused or cut the output for policy reasons."""
    bad_request = "bad_request"
    """Any other 4xx: the request itself is wrong; retrying cannot help."""
    cancelled = "cancelled"
    """The run was interrupted while the call was in flight."""


RETRYABLE: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.rate_limited,
        ErrorClass.server_error,
        ErrorClass.timeout,
        ErrorClass.connection_error,
        ErrorClass.bad_response,
    }
)


class CallError(Exception):
    """A classified failure of one attempt. Never carries request headers."""

    def __init__(
        self,
        error_class: ErrorClass,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.body = body


class CallRequest(BaseModel):
    """One request to an endpoint, independent of wire details."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    api: str = "chat"
    """`chat` (/chat/completions) or `completions` (/completions)."""
    messages: list[JsonObject] | None = None
    prompt: str | None = None
    defaults: JsonObject = Field(default_factory=dict)
    """The endpoint's default body fields: the lineup's `defaults` under the endpoint's `params`."""
    params: JsonObject = Field(default_factory=dict)
    """The item's body fields (temperature, max_tokens, seed, tools, logprobs, ...), over the
    defaults; a judge's or a probe's request states all of its fields here."""
    regime: JsonObject = Field(default_factory=dict)
    """A regime's extras over the item's fields (the audit's neutral sampler fields, its seed).
    The order of every level is `request_body`'s."""
    stream: bool = True


class ToolCall(BaseModel):
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    """The raw JSON text the endpoint produced; parsing and validation belong to scorers."""


class Timings(BaseModel):
    """Milliseconds since the request was sent (perf_counter_ns based)."""

    sent_ns: int | None = None
    """`time.perf_counter_ns()` when the request was sent (CLOCK_MONOTONIC on Linux)."""
    first_byte_ms: float | None = None
    role_ms: float | None = None
    """The role-only chunk: not a token."""
    first_token_ms: float | None = None
    """TTFT: first content, reasoning or tool-call delta."""
    last_token_ms: float | None = None
    end_ms: float | None = None
    token_chunk_ms: list[float] = Field(default_factory=list)
    """Arrival time of every token-bearing chunk."""


class CallResult(BaseModel):
    """A successful response, with everything measured on the way."""

    text: str = ""
    reasoning: str | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    logprobs: list[JsonObject] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_source: str = "none"
    """`usage` (reported by the endpoint) or `chunks` (token-bearing chunks counted) or `none`."""
    cached_prompt_tokens: int | None = None
    """Prompt tokens the endpoint says it served from its prompt cache (billed at a discount)."""
    cost_usd: float | None = None
    """The cost the endpoint reports for the call (`usage.cost`, as OpenRouter sends it)."""
    upstream: str | None = None
    """Who actually served the call, when the endpoint says (e.g. OpenRouter's `provider`)."""
    response_model: str | None = None
    timings: Timings = Field(default_factory=Timings)
    status: int = 200
    raw: str | None = None
    """The raw response: the JSON body, or the stream's events one a line (capped)."""


class Caller(Protocol):
    """Anything that makes a call: an `EndpointClient` (one attempt) or a run's `CallPolicy` (slots,
    rate limit and retries around it)."""

    async def call(self, req: CallRequest) -> CallResult: ...
