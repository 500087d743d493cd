"""Runs: turning a lineup into calls, scheduling them, and summarising what the store holds."""

from bakeoff.runs._capabilities import (
    CAPABILITY_COLUMNS,
    CAPABILITY_LABELS,
    FEATURES,
    CapabilityRow,
    capability_row,
)
from bakeoff.runs._cost import audit_costs, regime_costs
from bakeoff.runs._export import ExportError, export, load
from bakeoff.runs._gates import GATE_EXIT, Gate, failed_gates, parse_gate
from bakeoff.runs._handle import EndpointHandle, EndpointProgress
from bakeoff.runs._plan import (
    Job,
    api_keys,
    call_id,
    claimed_context,
    config_hash,
    create_run,
    lineup_of_run,
    plan,
    suite_for,
    suite_items,
)
from bakeoff.runs._policy import Attempt, CallPolicy
from bakeoff.runs._results import (
    SCHEMA_VERSION,
    EndpointSummary,
    Fidelity,
    RegimeCost,
    RunSummary,
    SuiteStats,
)
from bakeoff.runs._runner import (
    EndpointSession,
    RunOptions,
    RunOutcome,
    RunStatus,
    execute,
)
from bakeoff.runs._summary import summarize, summary_of

__all__ = [
    "CAPABILITY_COLUMNS",
    "CAPABILITY_LABELS",
    "FEATURES",
    "GATE_EXIT",
    "SCHEMA_VERSION",
    "Attempt",
    "CallPolicy",
    "CapabilityRow",
    "EndpointHandle",
    "EndpointProgress",
    "EndpointSession",
    "EndpointSummary",
    "ExportError",
    "Fidelity",
    "Gate",
    "Job",
    "RegimeCost",
    "RunOptions",
    "RunOutcome",
    "RunStatus",
    "RunSummary",
    "SuiteStats",
    "api_keys",
    "audit_costs",
    "call_id",
    "capability_row",
    "claimed_context",
    "config_hash",
    "create_run",
    "execute",
    "export",
    "failed_gates",
    "lineup_of_run",
    "load",
    "parse_gate",
    "plan",
    "regime_costs",
    "suite_for",
    "suite_items",
    "summarize",
    "summary_of",
]
