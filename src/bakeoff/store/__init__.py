"""The store: SQLite (WAL, versioned migrations) holding runs, endpoints, items, calls and scores."""

from bakeoff.store._db import Store, StoreError, default_db_path
from bakeoff.store._migrations import MIGRATIONS, migrate
from bakeoff.store._reads import loads
from bakeoff.store._records import CallRecord, SideCallRecord, dumps

__all__ = [
    "MIGRATIONS",
    "CallRecord",
    "SideCallRecord",
    "Store",
    "StoreError",
    "default_db_path",
    "dumps",
    "loads",
    "migrate",
]
