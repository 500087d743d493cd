"""Runs: turning a lineup into calls, scheduling them, and summarising what the store holds."""

from bakeoff.runs._runner import (
    EndpointProgress,
    RunOptions,
    RunOutcome,
    call_id,
    config_hash,
    create_run,
    execute,
    lineup_of_run,
    plan,
    suite_for,
    suite_items,
)
from bakeoff.runs._summary import summarize

__all__ = [
    "EndpointProgress",
    "RunOptions",
    "RunOutcome",
    "call_id",
    "config_hash",
    "create_run",
    "execute",
    "lineup_of_run",
    "plan",
    "suite_for",
    "suite_items",
    "summarize",
]
