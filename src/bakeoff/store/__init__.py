"""The store: SQLite (WAL, versioned migrations) holding runs, endpoints, items, calls and scores."""

from bakeoff.store._db import Store, StoreError, default_db_path, dumps, loads
from bakeoff.store._export import export_run
from bakeoff.store._migrations import MIGRATIONS, migrate

__all__ = [
    "MIGRATIONS",
    "Store",
    "StoreError",
    "default_db_path",
    "dumps",
    "export_run",
    "loads",
    "migrate",
]
