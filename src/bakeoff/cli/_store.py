from __future__ import annotations

import sys
from typing import Any

import orjson
import typer
from rich.table import Table

from bakeoff._pipeline import stored_summary
from bakeoff.cli._common import DbOption, err, fail, find_run_or_fail, open_store, out
from bakeoff.cli._run import FailOnOption, check_gates, parse_gates, summary_table
from bakeoff.runs._export import FORMATS, WHAT
from bakeoff.runs._export import export as export_rows


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
    summary = stored_summary(store, row["id"])
    if json_out:
        sys.stdout.write(
            orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        out.print(summary_table(summary))
    check_gates(summary, gates)


def export(  # noqa: PLR0913 — a typer command: its parameters are its options
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help=f"One of: {', '.join(FORMATS)} (default: the output's extension, else jsonl), or "
        "`inspect`: inspect_ai eval logs in the directory --output.",
    ),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output file (stdout if omitted, except for parquet)."
    ),
    what: str = typer.Option("calls", "--what", help=f"One of: {', '.join(WHAT)}."),
    suite: list[str] | None = typer.Option(None, "--suite", help="Only this suite (repeatable)."),
    endpoint: list[str] | None = typer.Option(
        None, "--endpoint", help="Only this endpoint (repeatable)."
    ),
    purpose: str | None = typer.Option(
        None,
        "--purpose",
        help="Calls only: `suite`, `audit`, `probe`, `judge` or `arena-judge` (default: all).",
    ),
    otel_endpoint: str | None = typer.Option(
        None,
        "--otel-endpoint",
        help="Send the run's calls as OpenTelemetry GenAI spans to this OTLP/HTTP collector "
        "instead of writing a file (headers from OTEL_EXPORTER_OTLP_HEADERS).",
    ),
    db: str | None = DbOption,
) -> None:
    """Export a run's calls (with item, scores, timings, cost), its summary (one row per endpoint
    and suite) or its verdicts, in one documented schema (docs/EXPORTS.md)."""
    store = open_store(db, existing=True)
    row = find_run_or_fail(store, run_id)
    if otel_endpoint is not None:
        send_spans(store, row["id"], otel_endpoint)
        return
    if fmt == "inspect":
        write_inspect(store, row["id"], output)
        return
    try:
        n = export_rows(
            store,
            row["id"],
            what=what,
            fmt=fmt,
            out=output,
            suites=suite or (),
            endpoints=endpoint or (),
            purpose=purpose,
        )
    except ValueError as e:
        raise fail(str(e)) from None
    if output:
        err.print(f"wrote {n} {what} rows to {output}")


def write_inspect(store: Any, run_id: str, output: str | None) -> None:
    """The run as inspect_ai eval logs in the directory `output`."""
    from bakeoff.runs._inspect import write_inspect_logs

    if output is None:
        raise fail("-f inspect needs --output DIR (one log per endpoint and suite goes there)")
    try:
        paths = write_inspect_logs(store, run_id, output)
    except ValueError as e:
        raise fail(str(e)) from None
    err.print(f"wrote {len(paths)} Inspect logs to {output} (inspect view --log-dir {output})")


def send_spans(store: Any, run_id: str, endpoint: str) -> None:
    """The run's calls to an OTLP/HTTP collector, said on stderr; a failure is exit 2."""
    from bakeoff.runs._otel import OtelError, send_run

    try:
        n = send_run(store, run_id, endpoint)
    except OtelError as e:
        raise fail(str(e)) from None
    err.print(f"sent {n} call spans of run {run_id} to {endpoint}")


def compare(
    before: str = typer.Argument(..., help="The baseline run (id, prefix or `last`)."),
    after: str = typer.Argument(..., help="The run to compare with it."),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help="Exit 100 when an endpoint's suite score fell significantly (Holm p < 0.05).",
    ),
) -> None:
    """Before/after: per endpoint and suite, both scores, the difference and an exact McNemar test
    on the items both runs asked, Holm-adjusted over the table; the fidelity verdicts side by
    side (what the UI's compare page shows)."""
    from rich.table import Table

    from bakeoff.runs import GATE_EXIT
    from bakeoff.ui._compare import SameRun, compare_runs
    from bakeoff.ui._data import NotFound

    store = open_store(db, existing=True)
    a, b = find_run_or_fail(store, before)["id"], find_run_or_fail(store, after)["id"]
    try:
        res = compare_runs(store, a, b)
    except (NotFound, SameRun) as e:
        raise fail(str(e)) from None
    fid = [
        {
            "endpoint": f["endpoint"],
            "before": (f["a"] or {}).get("claim") or (f["a"] or {}).get("verdict"),
            "after": (f["b"] or {}).get("claim") or (f["b"] or {}).get("verdict"),
        }
        for f in res["fidelity"]
    ]
    if json_out:
        doc = {"before": a, "after": b, "rows": res["rows"], "fidelity": fid}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        t = Table(title=f"{a} → {b}", title_justify="left")
        for col in ("endpoint", "suite", "before", "after", "Δ", "paired", "p (Holm)"):
            t.add_column(col, justify="left" if col in ("endpoint", "suite") else "right")
        for r in res["rows"]:
            p = (
                "-"
                if r["p_holm"] is None
                else f"{r['p_holm']:.2g}" + ("*" if r["significant"] else "")
            )
            t.add_row(r["endpoint"], r["suite"], f"{r['a']['score']:.3f}", f"{r['b']['score']:.3f}",
                      f"{r['delta']:+.3f}", str(r["paired"]), p)  # fmt: skip
        out.print(t)
        for f in fid:
            out.print(f"fidelity {f['endpoint']}: {f['before'] or '-'} → {f['after'] or '-'}")
    worse = [r for r in res["rows"] if r["significant"] and r["delta"] < 0]
    if fail_on_regression and worse:
        for r in worse:
            err.print(f"gate failed: regression: {r['endpoint']} / {r['suite']} {r['delta']:+.3f}")
        raise typer.Exit(GATE_EXIT)
