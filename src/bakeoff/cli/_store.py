from __future__ import annotations

import sys

import orjson
import typer
from rich.table import Table

from bakeoff.cli._common import DbOption, err, fail, find_run_or_fail, open_store, out
from bakeoff.cli._run import FailOnOption, check_gates, parse_gates, summary_table
from bakeoff.runs import summarize
from bakeoff.store import export_run
from bakeoff.store._export import FORMATS


def runs(
    db: str | None = DbOption,
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs to list."),
) -> None:
    """List stored runs, newest first."""
    store = open_store(db, existing=True)
    t = Table(title=f"runs in {store.path}", title_justify="left")
    for col in ("run id", "created", "status", "calls", "ok", "lineup"):
        t.add_column(col)
    for r in store.runs(limit):
        t.add_row(
            r["id"],
            r["created_at"],
            r["status"],
            str(r["n_calls"]),
            str(r["n_ok"]),
            r["source"] or "",
        )
    out.print(t)


def show(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary."),
    fail_on: list[str] | None = FailOnOption,
) -> None:
    """Show a run's summary, recomputed from the store (with --fail-on: gate a stored run)."""
    gates = parse_gates(fail_on)
    store = open_store(db, existing=True)
    row = find_run_or_fail(store, run_id)
    summary = summarize(store, row["id"])
    if json_out:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.print(summary_table(summary))
    check_gates(summary, gates)


def export(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output file (stdout for jsonl/csv if omitted)."
    ),
    db: str | None = DbOption,
) -> None:
    """Export every call of a run (request, response, timings, scores)."""
    store = open_store(db, existing=True)
    row = find_run_or_fail(store, run_id)
    try:
        n = export_run(store, row["id"], fmt, output)
    except ValueError as e:
        raise fail(str(e)) from None
    if output:
        err.print(f"wrote {n} calls to {output}")
