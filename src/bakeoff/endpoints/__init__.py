"""The wire: OpenAI-compatible requests, streamed responses, timings and classified errors; the
one way to an HTTP session (`open_session`) and the bounded synchronous POST (`post_json`)."""

from bakeoff.endpoints._client import (
    CREDENTIAL_HEADERS,
    ClientOptions,
    EndpointClient,
    Limits,
    StoredRequest,
    Timeouts,
    redact_headers,
)
from bakeoff.endpoints._errors import classify_status, parse_retry_after
from bakeoff.endpoints._request import request_body
from bakeoff.endpoints._retry import RetryDecision, RetryPolicy, decide
from bakeoff.endpoints._session import open_session
from bakeoff.endpoints._sse import SSELimitError, SSEParser
from bakeoff.endpoints._sync import PostError, post_json, redacted
from bakeoff.endpoints._types import (
    RETRYABLE,
    Caller,
    CallError,
    CallRequest,
    CallResult,
    ErrorClass,
    JsonObject,
    Timings,
    ToolCall,
)

__all__ = [
    "CREDENTIAL_HEADERS",
    "RETRYABLE",
    "CallError",
    "CallRequest",
    "CallResult",
    "Caller",
    "ClientOptions",
    "EndpointClient",
    "ErrorClass",
    "JsonObject",
    "Limits",
    "PostError",
    "RetryDecision",
    "RetryPolicy",
    "SSELimitError",
    "SSEParser",
    "StoredRequest",
    "Timeouts",
    "Timings",
    "ToolCall",
    "classify_status",
    "decide",
    "open_session",
    "parse_retry_after",
    "post_json",
    "redact_headers",
    "redacted",
    "request_body",
]
