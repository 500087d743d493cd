"""The web UI (`bakeoff ui`) and the self-contained HTML report (`bakeoff report`)."""

from bakeoff.ui._report import ReportStats, report_is_stale, write_report
from bakeoff.ui._server import make_app, serve
from bakeoff.ui._views import NotFound, Views, compare_runs

__all__ = [
    "NotFound",
    "ReportStats",
    "Views",
    "compare_runs",
    "make_app",
    "report_is_stale",
    "serve",
    "write_report",
]
