"""A sandbox for model-written code: bubblewrap namespaces around a child process with limits."""

from bakeoff.sandbox._bwrap import (
    ENV_VAR,
    SandboxUnavailable,
    isolation_problem,
    permit_unisolated,
    refusal,
    require_isolation,
    unisolated_permitted,
)
from bakeoff.sandbox._returns import Opaque, Returned
from bakeoff.sandbox._run import (
    FunctionRun,
    Limits,
    SandboxResult,
    call_function,
    isolation_layers,
    run_python,
)

__all__ = [
    "ENV_VAR",
    "FunctionRun",
    "Limits",
    "Opaque",
    "Returned",
    "SandboxResult",
    "SandboxUnavailable",
    "call_function",
    "isolation_layers",
    "isolation_problem",
    "permit_unisolated",
    "refusal",
    "require_isolation",
    "run_python",
    "unisolated_permitted",
]
