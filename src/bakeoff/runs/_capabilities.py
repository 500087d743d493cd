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
    return row
