from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bakeoff._pipeline import default_report_path
from bakeoff.cli._common import DbOption, err, fail, find_run_or_fail, open_store, out
from bakeoff.store import Store


def ui(
    db: str | None = DbOption,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (default: this machine only)."
    ),
    port: int = typer.Option(8765, "--port", "-p", help="Port to listen on."),
    open_browser: bool = typer.Option(False, "--open", help="Open a browser tab."),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="A host name the UI is reached by besides its address (repeatable; with --host "
        "0.0.0.0 this machine's own names and addresses are accepted already). Requests with any "
        "other Host header are refused (DNS rebinding).",
    ),
) -> None:
    """Browse runs in a local web app: the endpoint × suite matrix, items side by side with diffs,
    every call's trace, the audit's evidence, perf charts, run comparisons and blind arena votes."""
    from bakeoff.ui import serve

    store = open_store(db, existing=True)
    path, shown = store.target, store.path
    store.close()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] serving on {host}: anyone who can reach this address can read "
            "every prompt and output in the database"
        )
    err.print(f"bakeoff ui on [bold]http://{host}:{port}/[/] over {shown} (Ctrl-C to stop)")
    try:
        serve(path, host, port, open_browser=open_browser, allow_hosts=allow_host)
    except OSError as e:
        raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def write_report_with_progress(store: Store, run_id: str, path: Path, quiet: bool = False) -> Path:
    from bakeoff.ui import write_report

    with Progress(
        TextColumn("writing report"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task("report", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        stats = write_report(store, run_id, path, on_page=tick)
    err.print(
        f"report: [bold]{stats.path}[/] ({stats.pages} pages, {stats.bytes / 1e6:.1f} MB, "
        "self-contained: open it from disk, offline)"
    )
    return stats.path


def refresh_report(store: Store, run_id: str, quiet: bool = False) -> None:
    """After a command added to a run (perf sweeps, votes, verdicts): the report at the default
    path, if there is one, rewritten when it no longer shows everything the store holds."""
    from bakeoff.ui import report_is_stale

    path = default_report_path(store, run_id)
    if report_is_stale(store, run_id, path):
        err.print(f"the report of run {run_id} misses what was added since: rewriting it")
        write_report_with_progress(store, run_id, path, quiet=quiet)


def report(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="HTML file to write (default bakeoff-reports/<run>.html)."
    ),
    db: str | None = DbOption,
) -> None:
    """Write one self-contained HTML file of a run (JS and CSS inlined, no network needed)."""
    store = open_store(db, existing=True)
    row = find_run_or_fail(store, run_id)
    write_report_with_progress(store, row["id"], output or default_report_path(store, row["id"]))


def arena(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    judge: str | None = typer.Option(
        None, "--judge", help="Endpoint of the run's lineup to ask, as an LLM judge, about pairs."
    ),
    pairs: int = typer.Option(50, "--pairs", "-n", help="Pairs for the judge to compare."),
    seed: int = typer.Option(0, "--seed", help="Which pairs the judge gets."),
    db: str | None = DbOption,
) -> None:
    """Arena ratings (Bradley–Terry, raw and length-controlled) from the votes cast in `bakeoff ui`;
    with --judge, first let an endpoint judge pairs of outputs (both orders asked)."""
    from bakeoff.arena import arena_summary, judge_pairs
    from bakeoff.runs import lineup_of_run

    store = open_store(db, existing=True)
    row = find_run_or_fail(store, run_id)
    lineup = lineup_of_run(store, row["id"])
    if judge is not None:
        if judge not in {e.name for e in lineup.endpoints}:
            raise fail(
                f"no endpoint {judge!r} in run {row['id']}: one of "
                + ", ".join(e.name for e in lineup.endpoints)
            )
        with Progress(
            TextColumn(f"judge {judge}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("judge", total=pairs)
            try:
                n = asyncio.run(
                    judge_pairs(
                        store,
                        row["id"],
                        lineup,
                        judge,
                        pairs,
                        seed=seed,
                        on_done=lambda: progress.advance(task),
                    )
                )
            except KeyboardInterrupt:
                raise fail("interrupted (the votes stored so far are kept)", 130) from None
        err.print(f"{n} judge votes stored")
    summary = arena_summary(store, row["id"], lineup.reference)
    refresh_report(store, row["id"])  # the votes cast in `bakeoff ui` too
    if not summary["voters"]:
        err.print("no votes yet: vote in `bakeoff ui`, or use --judge NAME")
    for voter, v in summary["voters"].items():
        title = (
            f"{voter}: {v['votes']} votes, {v['decided']} decided "
            f"(ties {v['ties']}, unread {v['unread']}: left out of the ratings)"
        )
        t = Table(title=title, title_justify="left")
        for col in ("endpoint", "rating", "95% CI", "length-controlled", "95% CI ", "votes"):
            t.add_column(col)
        lc = v["bt_length_controlled"]["ratings"]
        for name, r in v["bt"]["ratings"].items():
            t.add_row(
                name,
                f"{r['rating']:.0f}",
                f"{r['ci95'][0]}–{r['ci95'][1]}",
                f"{lc[name]['rating']:.0f}",
                f"{lc[name]['ci95'][0]}–{lc[name]['ci95'][1]}",
                str(r["votes"]),
            )
        out.print(t)
        if v.get("warning"):
            err.print(f"[bold red]warning:[/] {v['warning']}")
        if "judge" in v:
            j = v["judge"]
            out.print(
                f"  consistent across orders {j['consistent_rate']}, first position chosen "
                f"{j['first_position_win_rate']}, longer output won {j['longer_won_rate']}"
            )
