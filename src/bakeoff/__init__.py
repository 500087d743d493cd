"""bakeoff: put LLM inference endpoints side by side.

The public API. Everything else lives in the concept packages (`endpoints`, `lineups`, `suites`,
`runs`, `store`, `fake`) and may change without notice.
"""

import typing

from bakeoff._version import __version__

if typing.TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from bakeoff._pipeline import RunError, arun, run
    from bakeoff.endpoints import (
        CallError,
        CallRequest,
        CallResult,
        EndpointClient,
        ErrorClass,
        RetryPolicy,
        Timeouts,
    )
    from bakeoff.fake import FakeConfig, FakeServer
    from bakeoff.lineups import Endpoint, Lineup, LineupError, load_lineup, parse_lineup
    from bakeoff.plugins import hookimpl
    from bakeoff.providers import Provider
    from bakeoff.runs import RunOptions, RunSummary, create_run, execute, export, load, summarize
    from bakeoff.store import Store
    from bakeoff.suites import Item, Score, Suite

_HOME = {
    "CallError": "bakeoff.endpoints",
    "CallRequest": "bakeoff.endpoints",
    "CallResult": "bakeoff.endpoints",
    "Endpoint": "bakeoff.lineups",
    "EndpointClient": "bakeoff.endpoints",
    "ErrorClass": "bakeoff.endpoints",
    "FakeConfig": "bakeoff.fake",
    "FakeServer": "bakeoff.fake",
    "Item": "bakeoff.suites",
    "Lineup": "bakeoff.lineups",
    "LineupError": "bakeoff.lineups",
    "Provider": "bakeoff.providers",
    "RetryPolicy": "bakeoff.endpoints",
    "RunError": "bakeoff._pipeline",
    "RunOptions": "bakeoff.runs",
    "RunSummary": "bakeoff.runs",
    "Score": "bakeoff.suites",
    "Store": "bakeoff.store",
    "Suite": "bakeoff.suites",
    "Timeouts": "bakeoff.endpoints",
    "arun": "bakeoff._pipeline",
    "create_run": "bakeoff.runs",
    "execute": "bakeoff.runs",
    "export": "bakeoff.runs",
    "hookimpl": "bakeoff.plugins",
    "load": "bakeoff.runs",
    "load_lineup": "bakeoff.lineups",
    "parse_lineup": "bakeoff.lineups",
    "run": "bakeoff._pipeline",
    "summarize": "bakeoff.runs",
}
"""Where each public name lives: imported on first use, so `import bakeoff` (and every CLI
command) does not pay for aiohttp, numpy and the stores before it needs them."""


__all__ = [
    "CallError",
    "CallRequest",
    "CallResult",
    "Endpoint",
    "EndpointClient",
    "ErrorClass",
    "FakeConfig",
    "FakeServer",
    "Item",
    "Lineup",
    "LineupError",
    "Provider",
    "RetryPolicy",
    "RunError",
    "RunOptions",
    "RunSummary",
    "Score",
    "Store",
    "Suite",
    "Timeouts",
    "__version__",
    "arun",
    "create_run",
    "execute",
    "export",
    "hookimpl",
    "load",
    "load_lineup",
    "parse_lineup",
    "run",
    "summarize",
]


def __getattr__(name: str) -> object:
    if name in _HOME:
        import importlib

        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bakeoff' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
