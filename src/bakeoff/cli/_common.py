from __future__ import annotations

import sqlite3
from pathlib import Path

import typer
from rich.console import Console

from bakeoff.lineups import Lineup, LineupError, load_lineup
from bakeoff.store import Store, StoreError, default_db_path


def _console(stderr: bool) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal:
        # piped or captured: do not squeeze tables into 80 columns
        c = Console(stderr=stderr, width=max(c.width, 160))
    return c


err = _console(stderr=True)
out = _console(stderr=False)

DbOption = typer.Option(
    None, "--db", envvar="BAKEOFF_DB", help="SQLite database (default ./bakeoff.db)."
)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def open_store(db: str | None) -> Store:
    try:
        return Store(db or default_db_path())
    except StoreError as e:
        raise fail(str(e)) from None


def find_run_or_fail(store: Store, ref: str) -> sqlite3.Row:
    """A run by id, unique id prefix or `last`; a clear error (exit 2) if there is none."""
    row = store.find_run(ref)
    if row is None:
        raise fail(f"no run {ref!r} in {store.path} (see `bakeoff runs`)")
    return row


def load_lineup_or_default(config: Path | None) -> tuple[Path, Lineup]:
    """The lineup file given, or the default local lineup (said on stderr); a malformed file is a
    clear error (exit 2)."""
    if config is None:
        from bakeoff.local import default_lineup_path

        config = default_lineup_path()
        err.print(f"no lineup given: using the default local lineup ({config})")
    try:
        return config, load_lineup(config)
    except LineupError as e:
        raise fail(str(e)) from None
