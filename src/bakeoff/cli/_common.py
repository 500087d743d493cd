from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bakeoff.lineups import Lineup, LineupError, keys
from bakeoff.plugins import load
from bakeoff.store import HELD, Row, Store


class _Console(Console):
    """A console that never elides what it prints, at any width.

    A message (a string or a `Text`) is printed soft-wrapped: rich inserts no line break of its own,
    so a long path cannot push the cause of an error onto another line or out of a `grep`; the
    terminal wraps it. A table's cells fold onto more lines instead of ending in "…" (rich's
    default for a column that does not fit). A message is cleaned of every API key the process
    has read (`store.HELD`): an endpoint's error body that echoes the key is printed without it."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if HELD:
            objects = tuple(_clean(o) for o in objects)
        for o in objects:
            if isinstance(o, Table):
                for col in o.columns:
                    col.overflow = "fold"
        if objects and all(isinstance(o, str | Text) for o in objects):
            kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)


def _clean(o: Any) -> Any:
    if isinstance(o, str):
        return HELD.data(o)
    if isinstance(o, Text) and HELD.data(o.plain) != o.plain:
        return Text(HELD.data(o.plain))  # its styles go with the key
    return o


def _console(stderr: bool) -> Console:
    c = _Console(stderr=stderr)
    if not c.is_terminal:
        # piped or captured: do not squeeze tables into 80 columns
        c = _Console(stderr=stderr, width=max(c.width, 160))
    return c


err = _console(stderr=True)
out = _console(stderr=False)

DbOption = typer.Option(
    None,
    "--db",
    envvar="BAKEOFF_DB",
    help="SQLite file (default ./bakeoff.db), or a PostgreSQL URL postgresql://user@host/db "
    "(the team store: needs bakeoff[postgres]).",
)


def _allow(names: list[str] | None) -> list[str] | None:
    keys.allow(names or [])
    return names


AllowEnvOption = typer.Option(
    None,
    "--allow-env",
    metavar="NAME",
    callback=_allow,
    help="Let the lineup send this variable's value as an API key though its name is not an LLM "
    "key's (*_API_KEY, *_KEY, *_TOKEN, the preset's own) or is another service's credential "
    "(AWS_*, GITHUB_TOKEN, ...); repeatable. Also: BAKEOFF_ALLOW_ENV=NAME,NAME.",
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print the error (cleaned of every key the process read, a short one too: `HELD.message`)
    and the exit to raise."""
    message = HELD.message(message)  # as it is: `bakeoff[parquet]` is a hint, not rich markup
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def override(model: Any, field: str, value: Any, flag: str) -> None:
    """Set a command-line value on a validated settings model, checked as the file's would be."""
    from pydantic import ValidationError

    try:
        setattr(model, field, value)
    except ValidationError as e:
        msg = "; ".join(er["msg"] for er in e.errors())
        raise fail(f"{flag} {value!r}: {msg}") from None


def open_store(db: str | None, *, existing: bool = False) -> Store:
    """The database (created if missing, unless `existing`: read-only commands never leave an
    empty database behind); a problem is exit 2 (`_pipeline.open_store`'s message)."""
    from bakeoff._pipeline import RunError
    from bakeoff._pipeline import open_store as open_or_refuse

    try:
        return open_or_refuse(db, existing=existing)
    except RunError as e:
        raise fail(str(e)) from None


def find_run_or_fail(store: Store, ref: str) -> Row:
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
        return config, load(config)
    except LineupError as e:
        raise fail(str(e)) from None
