"""A capability probe's result, as `probes.result_json` keeps it: produced by `bakeoff.perf`'s
probes, read by the capability matrix (`bakeoff.runs.capability_row`). TypedDicts, so a result
stored by an older version (without `said` or `limit_reached`) reads as one of these."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Feature = Literal[
    "stream_usage",
    "logprobs",
    "top_logprobs",
    "tools",
    "parallel_tools",
    "json_mode",
    "json_schema",
    "seed_determinism",
]
"""The features a probe asks for, each a `FeatureProbe` of the result."""


class ContextPoint(TypedDict):
    """One prompt size the context search tried."""

    sent_tokens_est: int
    accepted: bool
    prompt_tokens: int | None
    error: str | None


class Truncation(TypedDict):
    at_prompt_tokens: int
    why: str


class Needle(TypedDict):
    tokens_est: int
    found: bool


class ContextProbe(TypedDict, total=False):
    claimed: int | None
    largest_accepted_est: int | None
    largest_prompt_tokens: int | None
    first_rejected_est: int | None
    limit_reached: bool
    stopped_by: str | None
    limit_tried: int
    silent_truncation: Truncation | None
    needle_at_start: Needle | None
    points: list[ContextPoint]


class OutputProbe(TypedDict):
    """The output-length probe: what was asked, and what came back (or the error)."""

    asked: int
    error: NotRequired[str | None]
    produced: NotRequired[int | None]
    finish_reason: NotRequired[str | None]
    honoured: NotRequired[bool]
    capped_at: NotRequired[int | None]


class FeatureProbe(TypedDict, total=False):
    """One feature: accepted (answered), honoured (the reply did it), the refusal's error and
    body (`said`); or `not_tested` with why (the preset strips its fields)."""

    accepted: bool
    honoured: bool
    error: str | None
    said: str | None
    errors: list[str | None]
    """Seed determinism: the error of each of its three calls that failed."""
    not_tested: str


class ProbeResult(TypedDict, total=False):
    """One endpoint's probe result; `error` alone when the probe itself failed."""

    context: ContextProbe
    max_output: OutputProbe
    stream_usage: FeatureProbe
    logprobs: FeatureProbe
    top_logprobs: FeatureProbe
    tools: FeatureProbe
    parallel_tools: FeatureProbe
    json_mode: FeatureProbe
    json_schema: FeatureProbe
    seed_determinism: FeatureProbe
    error: str
