"""Classify HTTP failures into `ErrorClass`es."""

from __future__ import annotations

import email.utils
import math
import time

from bakeoff.endpoints._types import CallError, ErrorClass

_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
    "exceeds the",
    "requested tokens",
    "tokens + `max_new_tokens` must be",  # text-generation-inference (Together's error text)
    "reduce the length of the messages",  # Groq
    "maximum input length",
)
_FILTER_WORDS = ("content_filter", "content filter", "content policy", "safety", "moderation")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()[:100]
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan" would sort wrongly in asyncio's timer heap and stall every other timer
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def classify_status(
    status: int, body: str, content_type: str = "", retry_after: str | None = None
) -> CallError:
    """Turn a non-2xx response into a classified error. `body` is kept short and never has headers."""
    snippet = body[:500]
    lower = snippet.lower()
    if retry_after:  # a header shown in the detail: printable, short
        retry_after = retry_after[:40].encode("utf-8", "replace").decode("utf-8")
    if status in (401, 403):
        return CallError(ErrorClass.auth, f"HTTP {status}", status=status, body=snippet)
    if status == 429:
        return CallError(
            ErrorClass.rate_limited,
            f"HTTP 429{' (Retry-After ' + retry_after + ')' if retry_after else ''}",
            status=status,
            retry_after=parse_retry_after(retry_after),
            body=snippet,
        )
    if status == 408:
        return CallError(ErrorClass.timeout, "HTTP 408 from server", status=status, body=snippet)
    if status >= 500:
        kind = " (HTML page)" if "html" in content_type else ""
        return CallError(
            ErrorClass.server_error,
            f"HTTP {status}{kind}",
            status=status,
            retry_after=parse_retry_after(retry_after),
            body=snippet,
        )
    if any(w in lower for w in _CONTEXT_WORDS):
        return CallError(ErrorClass.context_overflow, f"HTTP {status}", status=status, body=snippet)
    if any(w in lower for w in _FILTER_WORDS):
        return CallError(ErrorClass.content_filter, f"HTTP {status}", status=status, body=snippet)
    return CallError(ErrorClass.bad_request, f"HTTP {status}", status=status, body=snippet)


def classify_error_object(err: object) -> CallError:
    """An `{"error": ...}` object inside a 200 body or a stream event."""
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("type") or err)
        code = err.get("code")
    else:
        message, code = str(err), None
    text = f"{message} {code or ''}".lower()
    status = code if isinstance(code, int) else None
    if status is not None and status >= 400:
        return classify_status(status, message)
    if any(w in text for w in _CONTEXT_WORDS):
        return CallError(ErrorClass.context_overflow, "error object: " + message[:200])
    if any(w in text for w in _FILTER_WORDS):
        return CallError(ErrorClass.content_filter, "error object: " + message[:200])
    if "rate" in text and "limit" in text:
        return CallError(ErrorClass.rate_limited, "error object: " + message[:200])
    return CallError(ErrorClass.server_error, "error object: " + message[:200])
