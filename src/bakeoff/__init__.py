"""bakeoff: put LLM inference endpoints side by side.

The public API. Everything else lives in the concept packages (`endpoints`, `lineups`, `suites`,
`runs`, `store`, `fake`) and may change without notice.
"""

__version__ = "0.1.0"

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
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from bakeoff.suites import Item, Score, Suite

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
    "RunOptions",
    "Score",
    "Store",
    "Suite",
    "Timeouts",
    "__version__",
    "create_run",
    "execute",
    "hookimpl",
    "load_lineup",
    "parse_lineup",
    "summarize",
]
