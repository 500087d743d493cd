"""bakeoff: put LLM inference endpoints side by side.

The public API. Everything else lives in the concept packages (`endpoints`, `lineups`, `suites`,
`runs`, `store`, `fake`) and may change without notice.
"""

__version__ = "0.1.0"

from bakeoff.endpoints import (  # noqa: E402
    CallError,
    CallRequest,
    CallResult,
    EndpointClient,
    ErrorClass,
    RetryPolicy,
    Timeouts,
)
from bakeoff.fake import FakeConfig, FakeServer  # noqa: E402
from bakeoff.lineups import Endpoint, Lineup, LineupError, load_lineup, parse_lineup  # noqa: E402
from bakeoff.plugins import hookimpl  # noqa: E402
from bakeoff.providers import Provider  # noqa: E402
from bakeoff.runs import RunOptions, create_run, execute, summarize  # noqa: E402
from bakeoff.store import Store  # noqa: E402
from bakeoff.suites import Item, Score, Suite  # noqa: E402

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
