from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bakeoff.cli._common import (
    AllowEnvOption,
    DbOption,
    err,
    fail,
    find_run_or_fail,
    load_lineup_or_default,
    open_store,
    out,
    override,
)
from bakeoff.lineups import Lineup
from bakeoff.runs import (
    GATE_EXIT,
    EndpointProgress,
    Gate,
    failed_gates,
    parse_gate,
    summarize,
)
from bakeoff.store import Store

FailOnOption = typer.Option(
    None,
    "--fail-on",
    help="Exit 100 when a rule fails (repeatable): different, not-same, error-rate>X, score<X, "
    "SUITE.score<X; ENDPOINT:RULE for one endpoint (default: every endpoint but the reference).",
)
UnsafeCodeOption = typer.Option(
    False,
    "--unsafe-code",
    help="Where no bubblewrap sandbox can be made, run model-written code (the code suite, "
    "scorer: code) without isolation instead of refusing; the summary and report say so.",
)


CacheOption = typer.Option(
    None,
    "--cache/--no-cache",
    help="Answer calls from replies stored by earlier runs made with the cache on (development "
    "loops; default: the lineup's run.cache, off). A replayed answer is not a measurement: every "
    "figure that includes one says so.",
)
AllowErrorsOption = typer.Option(
    False,
    "--allow-errors",
    help="Exit 0 even when an endpoint's calls failed too often to be scored (default: exit 3, "
    "one line per endpoint naming the cause).",
)
OtelOption = typer.Option(
    None,
    "--otel-endpoint",
    help="After the run, send every call as an OpenTelemetry GenAI span to this OTLP/HTTP "
    "collector (headers from OTEL_EXPORTER_OTLP_HEADERS).",
)


def run(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Lineup YAML file (default: the local lineup of llama.cpp servers, no API key needed).",
        dir_okay=False,
    ),
    db: str | None = DbOption,
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print a machine-readable summary on stdout (the table goes to stderr).",
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Resume this run: only calls without a stored success are issued."
    ),
    new: bool = typer.Option(
        False, "--new", help="Start a new run even if an interrupted run of this lineup exists."
    ),
    suite: list[str] | None = typer.Option(
        None, "--suite", "-s", help="Suite to run (repeatable); overrides the lineup's run.suites."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Items per suite."),
    repeats: int | None = typer.Option(None, "--repeats", help="Calls per item per endpoint."),
    cache: bool | None = CacheOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    no_audit: bool = typer.Option(
        False,
        "--no-audit",
        help="Skip the fidelity audit (on by default when there is a reference).",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Where to write the run's HTML report (default bakeoff-reports/<run>.html).",
        dir_okay=False,
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML report."),
    unsafe_code: bool = UnsafeCodeOption,
    fail_on: list[str] | None = FailOnOption,
    no_preflight: bool = typer.Option(
        False, "--no-preflight", help="Do not check each endpoint's /models before the run."
    ),
    otel: str | None = OtelOption,
    allow_errors: bool = AllowErrorsOption,
    allow_env: list[str] | None = AllowEnvOption,
) -> None:
    """Run the lineup's suites and the fidelity audit over every endpoint; store every call; print
    the comparison. (From Python: `bakeoff.run()`, which this command is a shell over.)"""
    gates = parse_gates(fail_on)
    lineup, source = None, None
    if not resume:  # checked before a database is opened: a bad file leaves none behind
        config, lineup = _lineup_with_overrides(config, suite, limit, repeats, no_audit)
        source = str(config)
    store, run_id, lineup = _open_run(
        db, lineup, source, resume=resume, new=new, unsafe_code=unsafe_code, check=not no_preflight
    )
    before = len(store.succeeded_call_ids(run_id))
    status = execute_with_progress(store, run_id, lineup, use_cache=cache, quiet=quiet)
    where = None if no_report else (report or False)
    _conclude(
        store,
        run_id,
        status,
        json_out=json_out,
        report=where,
        quiet=quiet,
        gates=gates,
        otel=otel,
        carried=before,
        allow_errors=allow_errors,
    )


def _open_run(
    db: str | None,
    lineup: Lineup | None,
    source: str | None,
    *,
    resume: str | None,
    new: bool,
    unsafe_code: bool,
    check: bool,
) -> tuple[Store, str, Lineup]:
    """Preflight a new run's lineup (and its endpoints, when `check`), then open the database and
    resume or create the run; a problem is exit 2."""
    from bakeoff._pipeline import RunError, check_endpoints, preflight, prepare, record_preflight

    bills = []
    try:
        if lineup is not None:
            preflight(lineup, unsafe_code=unsafe_code, log=_say)
            if check:
                bills = asyncio.run(check_endpoints(lineup, log=_say))
        store = open_store(db, existing=bool(resume))
        if resume and store.find_run(resume) is None:
            find_run_or_fail(store, resume)  # the CLI's own message: ambiguous prefix or none
        run_id, lineup = prepare(
            store,
            lineup,
            resume=resume,
            new=new,
            unsafe_code=unsafe_code,
            source=source,
            checked=not resume,
            log=_say,
        )
        record_preflight(store, run_id, lineup, bills)
    except RunError as e:
        raise fail(str(e)) from None
    return store, run_id, lineup


def _conclude(
    store: Store,
    run_id: str,
    status: str,
    *,
    json_out: bool,
    report: Path | bool | None,
    quiet: bool,
    gates: list[Gate],
    otel: str | None = None,
    carried: int = 0,
    allow_errors: bool = False,
) -> None:
    """The summary, then the exit: 130 if interrupted; the report (`report` None: none; False:
    the default path); the spans to `otel`; the gates (exit 100 if one fails). `carried`: the
    successful calls stored before this invocation (a resume says how many it made itself)."""
    summary = summarize(store, run_id)
    _print_summary(summary, json_out)
    if status != "complete":
        err.print(f"run {run_id} was interrupted; resume with: bakeoff run --resume {run_id}")
        raise typer.Exit(130)
    err.print(f"run [bold]{run_id}[/] complete; stored in {store.path}")
    if carried:
        made = len(store.succeeded_call_ids(run_id)) - carried
        err.print(f"{made} calls answered in this invocation, {carried} carried over from before")
    if report is not None:
        from bakeoff._pipeline import default_report_path
        from bakeoff.cli._ui import write_report_with_progress

        path = report if isinstance(report, Path) else default_report_path(store, run_id)
        write_report_with_progress(store, run_id, path, quiet=quiet)
    if otel is not None:
        from bakeoff.cli._store import send_spans

        send_spans(store, run_id, otel)
    if not allow_errors:
        check_failures(summary)
    check_gates(summary, gates)


FAILED_EXIT = 3


def check_failures(summary: dict[str, Any]) -> None:
    """Exit FAILED_EXIT (3), one line per endpoint and suite, when an endpoint's calls failed too
    often to score it (`run.max_failed_share`): a run that measured nothing is no success."""
    lines = [
        f"{e['name']}: {suite}: no score: {st['no_score']}"
        for e in summary["endpoints"]
        for suite, st in e["suites"].items()
        if st.get("no_score")
    ]
    if lines:
        for line in lines:
            err.print(f"[bold red]failed:[/] {escape(line)}", highlight=False)
        err.print("(--allow-errors to accept a run whose endpoints failed)")
        raise typer.Exit(FAILED_EXIT)


def parse_gates(rules: list[str] | None) -> list[Gate]:
    try:
        return [parse_gate(r) for r in rules or []]
    except ValueError as e:
        raise fail(str(e)) from None


def check_gates(summary: dict[str, Any], gates: list[Gate]) -> None:
    """Exit GATE_EXIT (100), one line per failure, when a gate fails."""
    failures = failed_gates(summary, gates)
    for f in failures:
        err.print(f"[bold red]gate failed:[/] {escape(f)}")
    if failures:
        raise typer.Exit(GATE_EXIT)
    if gates:
        err.print(f"gates passed: {', '.join(g.text for g in gates)}")


def _lineup_with_overrides(
    config: Path | None,
    suite: list[str] | None,
    limit: int | None,
    repeats: int | None,
    no_audit: bool,
) -> tuple[Path, Lineup]:
    """The lineup file (or the default one) with the command line's overrides, each validated."""
    config, lineup = load_lineup_or_default(config)
    if suite:
        override(lineup.run, "suites", list(suite), "--suite")
    if limit is not None:
        override(lineup.run, "limit", limit, "--limit")
    if repeats is not None:
        override(lineup.run, "repeats", repeats, "--repeats")
    if no_audit:
        lineup.audit.enabled = False
    return config, lineup


def _print_summary(summary: dict[str, Any], json_out: bool) -> None:
    """The summary and capability tables (on stderr with --json, which prints the JSON on
    stdout), then any warning."""
    console = err if json_out else out
    console.print(summary_table(summary))
    caps = {e["name"]: e["capabilities"] for e in summary["endpoints"] if e.get("capabilities")}
    if caps:
        from bakeoff.cli._perf import capability_rows_table

        console.print(capability_rows_table(caps))
    if (line := bill_line(summary)) is not None:
        console.print(line)
    for w in summary.get("warnings", []):
        err.print(f"[bold red]warning:[/] {escape(w)}")
    if json_out:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")


def _say(message: str) -> None:
    """The pipeline's notes on stderr, a warning in red."""
    if message.startswith("warning: "):
        err.print(f"[bold red]warning:[/] {escape(message[9:])}")
    else:
        err.print(escape(message))


def execute_with_progress(
    store: Store, run_id: str, lineup: Lineup, *, use_cache: bool | None, quiet: bool
) -> str:
    """Execute a stored run (suites, then the audit if enabled) with a live progress display."""
    from bakeoff._pipeline import RunError, execute_run

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TextColumn("{task.fields[tok_s]:.0f} tok/s"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def on_progress(name: str, p: EndpointProgress) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=p.total, errors=0, tok_s=0.0)
        progress.update(
            tasks[name], total=p.total, completed=p.done, errors=p.errors, tok_s=p.tok_s
        )

    with progress:
        try:
            return asyncio.run(
                execute_run(store, run_id, lineup, use_cache=use_cache, on_progress=on_progress)
            )
        except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM
            return "interrupted"
        except RunError as e:
            progress.stop()
            raise fail(f"{e}\nfix it, then: bakeoff run --resume {run_id}") from None


def summary_table(summary: dict[str, Any]) -> Table:
    t = Table(
        title=f"run {summary['run_id']} ({summary['status']})",
        title_justify="left",
        caption="score: over the calls answered (a failed call is not a wrong answer); Δ: score "
        "minus the reference's on the items both answered; p: McNemar (pass/fail, one call "
        "per item) or sign-flip on per-item differences, Holm-adjusted across endpoints; "
        "* significant at 0.05; intervals are over items",
        caption_justify="left",
    )
    t.add_column("endpoint")
    t.add_column("calls", justify="right")
    t.add_column("ok", justify="right")
    t.add_column("errors")
    for s in summary["suites"]:
        t.add_column(f"{s} score [95% CI]", justify="right")
    t.add_column("TTFT p50/p90 ms", justify="right")
    t.add_column("tok/s", justify="right")
    t.add_column("cost $", justify="right")
    has_fid = any(e.get("fidelity") for e in summary["endpoints"])
    if has_fid:
        t.add_column("fidelity (confident divergences / greedy calls)")
        t.caption = f"{t.caption}\n{fidelity_caption(summary)}"
    for e in summary["endpoints"]:
        errs = ", ".join(f"{k} {v}" for k, v in e["errors"].items()) or "-"
        cells = []
        for s in summary["suites"]:
            sc = e["suites"][s]
            if sc["score"] is None:
                cells.append(escape(f"n/a: {sc['no_score']}") if sc.get("no_score") else "-")
            else:
                lo, hi = sc["ci95"]
                answered = sc.get("answered")
                if answered is not None and answered < sc["n"]:
                    cell = f"{sc['score']:.2f} [{lo:.2f}, {hi:.2f}] n={answered}"
                    cell += f" ({sc['n'] - answered} failed"
                    if sc.get("score_failures_as_wrong") is not None:
                        cell += f"; {sc['score_failures_as_wrong']:.2f} counting them wrong"
                    cell += ")"
                else:
                    cell = f"{sc['score']:.2f} [{lo:.2f}, {hi:.2f}] n={sc['n']}"
                if sc.get("score_common") is not None:
                    cell += f"\non the {sc['n_common_items']} items all answered: "
                    cell += f"{sc['score_common']:.2f}"
                if sc.get("stopped_early"):
                    cell += f"\nstopped early: {sc['n_items']}/{sc['items_planned']} items"
                vs = sc.get("vs_reference")
                if vs and vs.get("p_holm") is not None:
                    mark = "[red]*[/]" if vs["significant"] else ""
                    cell += f"\nΔ {vs['delta']:+.2f} p={vs['p_holm']:.2g}{mark}"
                cells.append(cell)
        ttft = e["ttft_ms"]
        ttft_s = "-" if ttft["p50"] is None else f"{ttft['p50']:.0f} / {ttft['p90']:.0f}"
        tps = e["output_tok_s"]["p50"]
        name = e["name"] + (" (ref)" if e["reference"] else "")
        t.add_row(
            name,
            str(e["calls"]),
            str(e["successes"]),
            errs,
            *cells,
            ttft_s,
            "-" if tps is None else f"{tps:.0f}",
            cost_cell(e),
            *([fidelity_cell(e.get("fidelity"))] if has_fid else []),
        )
    return t


def bill_line(summary: dict[str, Any]) -> str | None:
    """The run's bill in one line: the total and its parts by purpose."""
    total = summary.get("cost_usd")
    if total is None:
        return None
    parts: dict[str, float] = {}
    for e in summary["endpoints"]:
        for purpose, usd in ((e.get("bill") or {}).get("by_purpose") or {}).items():
            parts[purpose] = parts.get(purpose, 0.0) + usd
    detail = ", ".join(f"{k} ${v:.4f}" for k, v in sorted(parts.items()))
    return f"bill: ${total:.4f} ({detail})"


def cost_cell(e: dict[str, Any]) -> str:
    """The endpoint's bill: every call priced (suite, audit, probe, judge); replays from the cache
    and unpriced calls said, never passed off as free."""
    bill = e.get("bill") or {}
    cost = e.get("cost_usd")
    cell = "-" if cost is None else f"{cost:.4f}"
    notes = []
    if n := (bill.get("sources") or {}).get("cached"):
        notes.append(f"{n} cached")
    if n := bill.get("unpriced"):
        notes.append(f"{n} unpriced")
    if n := e.get("wrong_upstream"):  # of every call billed, as the cost above: not of `calls`
        notes.append(
            f"[red]{n} of {e.get('wrong_upstream_of')} billed calls on a wrong upstream[/]"
        )
    return cell + (f"\n({', '.join(notes)})" if notes else "")


def fidelity_caption(summary: dict[str, Any]) -> str:
    """What the fidelity column claims, and what its alpha controls."""
    f: dict[str, Any] = next(
        (
            e["fidelity"]
            for e in summary["endpoints"]
            if (e.get("fidelity") or {}).get("multiplicity")
        ),
        {},
    )
    mult, alpha = f.get("multiplicity", "per_endpoint"), f.get("alpha") or 0.05
    controls = (
        "false discovery rate over the candidates (e-BH)" if mult == "fdr" else "each verdict alone"
    )
    return (
        "fidelity: k/n = greedy prompts whose output parts from the reference's where it was sure "
        "of its token; same ≤δ = a 95% anytime-valid bound on that share below δ; "
        f"alpha {alpha:g} controls {controls}; ! = a behavioural flag"
    )


def fidelity_cell(f: dict[str, Any] | None) -> str:
    if not f:
        return "-"
    if f["verdict"] == "reference":
        return "reference"
    colour = {"same": "green", "different": "red"}.get(f["verdict"], "yellow")
    claim = f.get("claim") or f"{f['verdict']} (p={f['p_value']:.2g}, {f['calls']})"
    verdict, _, rest = claim.partition(" ")
    cell = f"[{colour}]{escape(verdict)}[/] {escape(rest)}"
    if f.get("flags"):
        cell += " [yellow]![/]"
    return cell
