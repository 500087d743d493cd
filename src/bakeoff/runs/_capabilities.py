"""The capability matrix: what a probe result says an endpoint honours, as one row per endpoint."""

from __future__ import annotations

from typing import Any

FEATURES = (
    "stream_usage",
    "logprobs",
    "top_logprobs",
    "tools",
    "parallel_tools",
    "json_mode",
    "json_schema",
    "seed_determinism",
)
CAPABILITY_COLUMNS = (
    "context_tokens",
    "context_claimed",
    "silent_truncation",
    "max_output_honoured",
    "output_capped_at",
    *FEATURES,
)
"""The capability matrix's columns, in order."""

CAPABILITY_LABELS = {
    "context_tokens": "largest prompt accepted (tokens)",
    "context_claimed": "context claimed (tokens)",
    "silent_truncation": "silently truncates at (tokens)",
    "max_output_honoured": "max_tokens honoured",
    "output_capped_at": "output capped at (tokens)",
    "stream_usage": "usage in streams",
    "logprobs": "logprobs",
    "top_logprobs": "top logprobs",
    "tools": "tool calls",
    "parallel_tools": "parallel tool calls",
    "json_mode": "JSON mode",
    "json_schema": "JSON schema",
    "seed_determinism": "same seed, same output",
    "probe_faults": "probe calls failed (not for size)",
}
"""The columns in words, for tables a person reads."""

INFRA_ERRORS = ("server_error", "timeout", "connection_error", "rate_limited", "bad_response")
"""Failures that say nothing about the feature or size probed: a probe result after one of them
may be wrong (a context bisection that met a 500 stops short of the real limit)."""


def capability_row(p: dict[str, Any]) -> dict[str, Any]:
    """The compact capability matrix row of a probe result (for summaries and tables)."""
    ctx = p.get("context") or {}
    out = p.get("max_output") or {}
    row: dict[str, Any] = {
        "context_tokens": ctx.get("largest_prompt_tokens"),
        "context_claimed": ctx.get("claimed"),
        "silent_truncation": (ctx.get("silent_truncation") or {}).get("at_prompt_tokens"),
        "max_output_honoured": out.get("honoured"),
        "output_capped_at": out.get("capped_at"),
    }
    for k in FEATURES:
        v = p.get(k) or {}
        row[k] = "yes" if v.get("honoured") else ("accepted" if v.get("accepted") else "no")
    row["probe_faults"] = probe_faults(p)
    return row


def probe_faults(p: dict[str, Any]) -> int:
    """How many probe calls failed for a reason unrelated to what they probed (`INFRA_ERRORS`)."""
    errors = [pt.get("error") for pt in (p.get("context") or {}).get("points") or []]
    errors.append((p.get("max_output") or {}).get("error"))
    errors += [(p.get(k) or {}).get("error") for k in FEATURES]
    return sum(1 for e in errors if isinstance(e, str) and e.split(":", 1)[0] in INFRA_ERRORS)
