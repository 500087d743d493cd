"""Retry policy: a pure function from (attempt, error) to a typed decision stored on the attempt row."""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, ConfigDict, Field

from bakeoff.endpoints._types import RETRYABLE, CallError


class RetryPolicy(BaseModel):
    """How failed attempts are retried. Only infrastructure errors are retried."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default

    max_retries: int = Field(default=4, ge=0, le=50)
    """Maximum number of retries, so 4 allows five attempts in total."""
    backoff_base_s: float = Field(default=0.5, ge=0, le=3600, allow_inf_nan=False)
    """First backoff; doubles with each retry (exponential backoff)."""
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    """Upper bound of one backoff, before jitter."""
    jitter: float = Field(default=0.5, ge=0, le=1)
    """Fraction of the backoff drawn at random ("equal jitter"): 0.5 waits between 50% and 100%."""
    retry_after_max_s: float = Field(default=120.0, ge=0, le=3600, allow_inf_nan=False)
    """A server's Retry-After longer than this is capped (the wait is still recorded)."""


class RetryDecision(BaseModel):
    """What to do after a failed attempt, and why."""

    retry: bool
    reason: str
    wait_s: float = 0.0


def decide(
    policy: RetryPolicy, attempt: int, error: CallError, rng: random.Random | None = None
) -> RetryDecision:
    """Decide whether attempt number `attempt` (1-based) is followed by another.

    Backoff is exponential with equal jitter; a Retry-After header replaces the computed backoff
    (capped at `retry_after_max_s`).
    """
    if error.error_class not in RETRYABLE:
        return RetryDecision(retry=False, reason=f"{error.error_class} is not retried")
    if attempt > policy.max_retries:
        return RetryDecision(
            retry=False, reason=f"gave up after {attempt} attempts ({policy.max_retries} retries)"
        )
    if error.retry_after is not None and math.isfinite(error.retry_after):
        wait = min(max(error.retry_after, 0.0), policy.retry_after_max_s)
        return RetryDecision(retry=True, reason="Retry-After honoured", wait_s=wait)
    backoff = min(policy.backoff_base_s * 2 ** (attempt - 1), policy.backoff_max_s)
    r = (rng or random).random()
    wait = backoff * (1 - policy.jitter) + backoff * policy.jitter * r
    return RetryDecision(retry=True, reason="exponential backoff", wait_s=wait)
