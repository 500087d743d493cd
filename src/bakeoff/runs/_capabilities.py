"""The capability matrix: what a probe result says an endpoint honours, as one row per endpoint."""

from __future__ import annotations

from typing import TypedDict, get_args

from bakeoff.store import ContextProbe, Feature, FeatureProbe, ProbeResult

FEATURES: tuple[Feature, ...] = get_args(Feature)
"""The features a probe asks for, in order."""
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


NOT_TESTED = "not tested: the preset strips it"
"""The cell of a feature whose fields the provider's preset removes: the probe did not ask."""


class CapabilityRow(TypedDict):
    """One endpoint's row of the capability matrix (`CAPABILITY_COLUMNS`, then `probe_faults`):
    each feature's cell is `yes`, `accepted`, `no`, `unknown: ...` or `not tested: ...`."""

    context_tokens: int | str | None
    context_claimed: int | None
    silent_truncation: int | None
    max_output_honoured: bool | str | None
    output_capped_at: int | None
    stream_usage: str
    logprobs: str
    top_logprobs: str
    tools: str
    parallel_tools: str
    json_mode: str
    json_schema: str
    seed_determinism: str
    probe_faults: int


def capability_row(p: ProbeResult) -> CapabilityRow:
    """The compact capability matrix row of a probe result (for summaries and tables). Each cell
    states only what a reply showed: a feature is `yes` (honoured), `accepted` (answered without
    it), `no` (refused with a 4xx naming it while other probe calls were answered), `unknown: ...` (no
    answer that says: transient errors, or every call refused) or `not tested: ...`; the context
    is a number only when the search met the limit (a refusal or a silent truncation), else
    `≥ N`, the largest prompt accepted before the search stopped."""
    ctx = p.get("context") or {}
    out = p.get("max_output")
    answered = _answered(p)
    error = None if out is None else out.get("error")
    truncation = ctx.get("silent_truncation")
    cell = {k: _feature_cell(k, p.get(k) or {}, answered) for k in FEATURES}
    return {
        "context_tokens": _context_cell(ctx, answered),
        "context_claimed": ctx.get("claimed"),
        "silent_truncation": None if truncation is None else truncation["at_prompt_tokens"],
        "max_output_honoured": (None if out is None else out.get("honoured"))
        if error is None
        else _unknown([error], answered),
        "output_capped_at": None if out is None else out.get("capped_at"),
        "stream_usage": cell["stream_usage"],
        "logprobs": cell["logprobs"],
        "top_logprobs": cell["top_logprobs"],
        "tools": cell["tools"],
        "parallel_tools": cell["parallel_tools"],
        "json_mode": cell["json_mode"],
        "json_schema": cell["json_schema"],
        "seed_determinism": cell["seed_determinism"],
        "probe_faults": probe_faults(p),
    }


def _answered(p: ProbeResult) -> bool:
    """Whether any probe call got a reply: without one, no refusal says what the endpoint does."""
    points = (p.get("context") or {}).get("points") or []
    out = p.get("max_output")
    return (
        any(pt.get("accepted") for pt in points)
        or (out is not None and "produced" in out)
        or any((p.get(k) or {}).get("accepted") for k in FEATURES)
    )


def _class(error: str | None) -> str:
    return (error or "").split(":", 1)[0]


def _unknown(errors: list[str | None], answered: bool) -> str:
    """The cell of a feature no reply decided: how many transient errors, or what refused it."""
    errs = [e for e in errors if e]
    transient = sum(1 for e in errs if _class(e) in INFRA_ERRORS)
    if transient:
        return f"unknown: {transient} transient error{'s' if transient != 1 else ''}"
    if not errs:
        return "unknown: not answered"
    if not answered:
        return f"unknown: every probe call failed ({_class(errs[0])})"
    return f"unknown: {errs[0][:60]}"


NAMED_BY: dict[Feature, tuple[str, ...]] = {
    "stream_usage": ("stream",),
    "logprobs": ("logprob",),
    "top_logprobs": ("logprob",),
    "tools": ("tool", "function"),
    "parallel_tools": ("tool", "function", "parallel"),
    "json_mode": ("response_format", "json"),
    "json_schema": ("response_format", "json", "schema"),
    "seed_determinism": ("seed",),
}
"""Words by which a refusal names the feature it refuses (any of them, case aside)."""


def _feature_cell(name: Feature, v: FeatureProbe, answered: bool) -> str:
    if v.get("not_tested"):
        return NOT_TESTED
    if v.get("honoured"):
        return "yes"
    if v.get("accepted"):
        return "accepted"
    errors = v.get("errors") or [v.get("error")]
    first = next((e for e in errors if e), None)
    # a 4xx while other calls were answered, whose body names the feature: the endpoint refused
    # it (a 402 refuses every call, whatever it asks; a result stored before `said` was kept
    # has no body to read)
    said = v.get("said")
    if (
        answered
        and first is not None
        and _class(first) == "bad_request"
        and "HTTP 402" not in first
        and all(_class(e) not in INFRA_ERRORS for e in errors if e)
    ):
        if said is None or any(w in said.lower() for w in NAMED_BY.get(name, ())):
            return "no"
        return f"unknown: refused without naming it ({first[:40]})"
    return _unknown(errors, answered)


def _context_cell(ctx: ContextProbe, answered: bool) -> int | str | None:
    """The largest prompt accepted (tokens, as the endpoint counted them): a number when the search
    met the limit, `≥ N` when it stopped first (its cap, or an error unrelated to size)."""
    points = ctx.get("points") or []
    largest = ctx.get("largest_prompt_tokens")
    reached = ctx.get("limit_reached", any(not pt.get("accepted") for pt in points))
    if largest is not None and (reached or ctx.get("silent_truncation")):
        return int(largest)
    if largest is not None:
        return f"≥ {largest}"
    errors = [pt.get("error") for pt in points]
    return _unknown(errors, answered) if any(errors) else None


def probe_faults(p: ProbeResult) -> int:
    """How many probe calls failed for a reason unrelated to what they probed (`INFRA_ERRORS`)."""
    errors = [pt.get("error") for pt in (p.get("context") or {}).get("points") or []]
    out = p.get("max_output")
    errors.append(None if out is None else out.get("error"))
    for k in FEATURES:
        if k != "top_logprobs":  # the logprobs call's own reply
            v = p.get(k) or {}
            errors += v.get("errors") or [v.get("error")]
    return sum(1 for e in errors if isinstance(e, str) and e.split(":", 1)[0] in INFRA_ERRORS)
