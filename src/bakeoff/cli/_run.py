from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bakeoff._pipeline import Hooks, Outcome, RunError, RunStopped
from bakeoff.cli._common import AllowEnvOption, DbOption, err, fail, out, override
from bakeoff.lineups import Lineup
from bakeoff.runs import (
    GATE_EXIT,
    EndpointProgress,
    EndpointSummary,
    Fidelity,
    Gate,
    RunSummary,
    SuiteStats,
    failed_gates,
    parse_gate,
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


def run(  # noqa: PLR0913 — a typer command: its parameters are its options
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
    from bakeoff._pipeline import RunRequest, drive

    gates = parse_gates(fail_on)
    request = RunRequest(
        db=db,
        resume=resume,
        new=new,
        use_cache=cache,
        report=False if no_report else (report or True),
        unsafe_code=unsafe_code,
        check=not no_preflight,
        otel=otel,
    )
    hooks = CliHooks(
        quiet=quiet, json_out=json_out, overrides=Overrides(suite, limit, repeats, no_audit)
    )
    try:
        outcome = drive(config, request, hooks)
    except RunError as e:
        raise fail(_failure(e)) from None
    if outcome.status != "complete":
        rid = outcome.summary.run_id
        err.print(f"run {rid} was interrupted; resume with: bakeoff run --resume {rid}")
        raise typer.Exit(130)
    if not allow_errors:
        check_failures(outcome.summary)
    check_gates(outcome.summary, gates)


@dataclass(frozen=True)
class Overrides:
    """The command line's changes to a new run's lineup, each validated as the file's would be."""

    suite: list[str] | None = None
    limit: int | None = None
    repeats: int | None = None
    no_audit: bool = False

    def apply(self, lineup: Lineup) -> None:
        if self.suite:
            override(lineup.run, "suites", list(self.suite), "--suite")
        if self.limit is not None:
            override(lineup.run, "limit", self.limit, "--limit")
        if self.repeats is not None:
            override(lineup.run, "repeats", self.repeats, "--repeats")
        if self.no_audit:
            lineup.audit.enabled = False


class CliHooks(Hooks):
    """The pipeline as the terminal shows it: its notes on stderr (a warning in red), a progress
    bar per endpoint, the command line's overrides, the summary tables (with --json: the JSON on
    stdout, the tables on stderr), the report written with a progress bar."""

    def __init__(
        self, *, quiet: bool, json_out: bool = False, overrides: Overrides | None = None
    ) -> None:
        super().__init__()
        self.quiet, self.json_out, self.overrides = quiet, json_out, overrides or Overrides()
        self.bars = Progress(
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
        self.tasks: dict[str, TaskID] = {}

    def log(self, message: str) -> None:
        _say(message)

    def progress(self, endpoint: str, p: EndpointProgress) -> None:
        if endpoint not in self.tasks:
            self.tasks[endpoint] = self.bars.add_task(endpoint, total=p.total, errors=0, tok_s=0.0)
        self.bars.update(
            self.tasks[endpoint], total=p.total, completed=p.done, errors=p.errors, tok_s=p.tok_s
        )

    def edit(self, lineup: Lineup) -> None:
        self.overrides.apply(lineup)

    def calls(self) -> Progress:
        return self.bars

    def summarized(self, outcome: Outcome) -> None:
        _print_summary(outcome.summary, self.json_out)
        if outcome.status != "complete":
            return
        err.print(f"run [bold]{outcome.summary.run_id}[/] complete; stored in {outcome.db}")
        if outcome.carried:
            err.print(
                f"{outcome.made} calls answered in this invocation, {outcome.carried} carried over"
                " from before"
            )

    def write_report(self, store: Store, run_id: str, path: Path) -> Path:
        from bakeoff.cli._ui import write_report_with_progress

        return write_report_with_progress(store, run_id, path, quiet=self.quiet)


def _failure(e: RunError) -> str:
    """The pipeline's error as the CLI says it: a stopped run with the command that resumes it."""
    if isinstance(e, RunStopped):
        return f"{e}\nfix it, then: bakeoff run --resume {e.run_id}"
    return str(e)


FAILED_EXIT = 3


def check_failures(summary: RunSummary) -> None:
    """Exit FAILED_EXIT (3), one line per endpoint and suite, when an endpoint's calls failed too
    often to score it (`run.max_failed_share`): a run that measured nothing is no success."""
    lines = [
        f"{e.name}: {suite}: no score: {st.no_score}"
        for e in summary.endpoints
        for suite, st in e.suites.items()
        if st.no_score
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


def check_gates(summary: RunSummary, gates: list[Gate]) -> None:
    """Exit GATE_EXIT (100), one line per failure, when a gate fails."""
    failures = failed_gates(summary, gates)
    for f in failures:
        err.print(f"[bold red]gate failed:[/] {escape(f)}")
    if failures:
        raise typer.Exit(GATE_EXIT)
    if gates:
        err.print(f"gates passed: {', '.join(g.text for g in gates)}")


def _print_summary(summary: RunSummary, json_out: bool) -> None:
    """The summary and capability tables (on stderr with --json, which prints the JSON on
    stdout), then any warning."""
    console = err if json_out else out
    console.print(summary_table(summary))
    caps = {e.name: e.capabilities for e in summary.endpoints if e.capabilities}
    if caps:
        from bakeoff.cli._perf import capability_rows_table

        console.print(capability_rows_table(caps))
    if (line := bill_line(summary)) is not None:
        console.print(line)
    for w in summary.warnings:
        err.print(f"[bold red]warning:[/] {escape(w)}")
    if json_out:
        sys.stdout.write(
            orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )


def _say(message: str) -> None:
    """The pipeline's notes on stderr, a warning in red."""
    if message.startswith("warning: "):
        err.print(f"[bold red]warning:[/] {escape(message[9:])}")
    else:
        err.print(escape(message))


def execute_with_progress(
    store: Store, run_id: str, lineup: Lineup, *, use_cache: bool | None, quiet: bool
) -> str:
    """Execute a stored run (suites, then the audit if enabled) with the progress bars
    (`bakeoff audit`: the pipeline's `execute_stored`)."""
    from bakeoff._pipeline import execute_stored

    try:
        return execute_stored(
            store, run_id, lineup, use_cache=use_cache, hooks=CliHooks(quiet=quiet)
        )
    except RunError as e:
        raise fail(_failure(e)) from None


def summary_table(summary: RunSummary) -> Table:
    t = Table(
        title=f"run {summary.run_id} ({summary.status})",
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
    for s in summary.suites:
        t.add_column(f"{s} score [95% CI]", justify="right")
    t.add_column("TTFT p50/p90 ms", justify="right")
    t.add_column("tok/s", justify="right")
    t.add_column("cost $", justify="right")
    has_fid = any(e.fidelity for e in summary.endpoints)
    if has_fid:
        t.add_column("fidelity (confident divergences / greedy calls)")
        t.caption = f"{t.caption}\n{fidelity_caption(summary)}"
    for e in summary.endpoints:
        errs = ", ".join(f"{k} {v}" for k, v in e.errors.items()) or "-"
        cells = [suite_cell(e.suites[s]) for s in summary.suites]
        ttft = e.ttft_ms
        ttft_s = "-" if ttft.p50 is None else f"{ttft.p50:.0f} / {ttft.p90:.0f}"
        tps = e.output_tok_s.p50
        name = e.name + (" (ref)" if e.reference else "")
        t.add_row(
            name,
            str(e.calls),
            str(e.successes),
            errs,
            *cells,
            ttft_s,
            "-" if tps is None else f"{tps:.0f}",
            cost_cell(e),
            *([fidelity_cell(e.fidelity)] if has_fid else []),
        )
    return t


def suite_cell(sc: SuiteStats) -> str:
    """One endpoint's score on one suite: its interval and sample, the failed calls beside it,
    the score on the items all answered, an early stop, the difference from the reference."""
    if sc.score is None:
        return escape(f"n/a: {sc.no_score}") if sc.no_score else "-"
    lo, hi = sc.ci95
    answered = sc.answered
    if answered is not None and answered < sc.n:
        cell = f"{sc.score:.2f} [{lo:.2f}, {hi:.2f}] n={answered}"
        cell += f" ({sc.n - answered} failed"
        if sc.score_failures_as_wrong is not None:
            cell += f"; {sc.score_failures_as_wrong:.2f} counting them wrong"
        cell += ")"
    else:
        cell = f"{sc.score:.2f} [{lo:.2f}, {hi:.2f}] n={sc.n}"
    if sc.score_common is not None:
        cell += f"\non the {sc.n_common_items} items all answered: "
        cell += f"{sc.score_common:.2f}"
    if sc.stopped_early:
        cell += f"\nstopped early: {sc.n_items}/{sc.items_planned} items"
    vs = sc.vs_reference
    if vs and vs.p_holm is not None:
        mark = "[red]*[/]" if vs.significant else ""
        cell += f"\nΔ {vs.delta:+.2f} p={vs.p_holm:.2g}{mark}"
    return cell


def bill_line(summary: RunSummary) -> str | None:
    """The run's bill in one line: the total and its parts by purpose."""
    total = summary.cost_usd
    if total is None:
        return None
    parts: dict[str, float] = {}
    for e in summary.endpoints:
        for purpose, usd in (e.bill.by_purpose if e.bill else {}).items():
            parts[purpose] = parts.get(purpose, 0.0) + usd
    detail = ", ".join(f"{k} ${v:.4f}" for k, v in sorted(parts.items()))
    return f"bill: ${total:.4f} ({detail})"


def cost_cell(e: EndpointSummary) -> str:
    """The endpoint's bill: every call priced (suite, audit, probe, judge); replays from the cache
    and unpriced calls said, never passed off as free."""
    cost = e.cost_usd
    cell = "-" if cost is None else f"{cost:.4f}"
    notes = []
    if e.bill and (n := e.bill.sources.get("cached")):
        notes.append(f"{n} cached")
    if e.bill and (n := e.bill.unpriced):
        notes.append(f"{n} unpriced")
    if n := e.wrong_upstream:  # of every call billed, as the cost above: not of `calls`
        notes.append(f"[red]{n} of {e.wrong_upstream_of} billed calls on a wrong upstream[/]")
    return cell + (f"\n({', '.join(notes)})" if notes else "")


def fidelity_caption(summary: RunSummary) -> str:
    """What the fidelity column claims, and what its alpha controls."""
    f = next(
        (e.fidelity for e in summary.endpoints if e.fidelity and e.fidelity.multiplicity), None
    )
    mult = f.multiplicity if f else "per_endpoint"
    alpha = (f.alpha if f else None) or 0.05
    controls = (
        "false discovery rate over the candidates (e-BH)" if mult == "fdr" else "each verdict alone"
    )
    margins = sorted(
        {e.fidelity.margins for e in summary.endpoints if e.fidelity and e.fidelity.margins}
    )
    return (
        "fidelity: k/n = greedy prompts whose output parts from the reference's where it was sure "
        "of its token; same ≤δ = a 95% anytime-valid bound on that share below δ; "
        f"alpha {alpha:g} controls {controls}; ! = a behavioural flag"
        + (f"; sureness (margins) from {' / '.join(margins)}" if margins else "")
    )


def fidelity_cell(f: Fidelity | None) -> str:
    """The verdict, the endpoint's claimed quantization beside it, and the mode that decided the
    greedy test (where its margins came from)."""
    if not f:
        return "-"
    notes = "".join(
        f"\n{escape(line)}" for line in (f.vs_claim, f.margins and f"margins: {f.margins}") if line
    )
    if f.verdict == "reference":
        return escape(f.claim or "reference") + notes
    colour = {"same": "green", "different": "red"}.get(f.verdict, "yellow")
    claim = f.claim or f"{f.verdict} (p={f.p_value:.2g}, {f.calls})"
    verdict, _, rest = claim.partition(" ")
    cell = f"[{colour}]{escape(verdict)}[/] {escape(rest)}"
    if f.flags:
        cell += " [yellow]![/]"
    return cell + notes
