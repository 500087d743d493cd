"""The wire: OpenAI-compatible requests, streamed responses, timings and classified errors."""

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
from bakeoff.endpoints._sse import SSELimitError, SSEParser
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
    "parse_retry_after",
    "redact_headers",
    "request_body",
]
