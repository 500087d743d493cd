"""`bakeoff audit`: is each endpoint serving the reference model?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from bakeoff.cli._common import (
    AllowEnvOption,
    DbOption,
    err,
    fail,
    find_run_or_fail,
    open_store,
    out,
    override,
)
from bakeoff.cli._run import execute_with_progress
from bakeoff.lineups import LineupError
from bakeoff.plugins import load


def audit(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Lineup YAML (default: the local lineup).", dir_okay=False
    ),
    regime: list[str] | None = typer.Option(
        None, "--regime", "-r", help="greedy and/or sampled (repeatable; default: the lineup's)."
    ),
    budget: int | None = typer.Option(None, "--budget", help="Most calls per regime per endpoint."),
    rerun: str | None = typer.Option(
        None, "--rerun", help="Recompute the verdicts of a stored run without a single new call."
    ),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the verdicts as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    allow_env: list[str] | None = AllowEnvOption,
) -> None:
    """Audit every endpoint against the reference: same / different / inconclusive, with evidence."""
    from bakeoff.audit import AuditError, rerun_audit
    from bakeoff.runs import create_run, lineup_of_run

    store = open_store(db, existing=bool(rerun))
    if rerun:
        row = find_run_or_fail(store, rerun)
        run_id = row["id"]
        try:
            verdicts = rerun_audit(store, run_id, lineup_of_run(store, run_id))
        except AuditError as e:
            raise fail(str(e)) from None
        from bakeoff.cli._ui import refresh_report

        refresh_report(store, run_id, quiet)
    else:
        if config is None:
            from bakeoff.local import default_lineup_path

            config = default_lineup_path()
        try:
            lineup = load(config)
        except LineupError as e:
            raise fail(str(e)) from None
        if lineup.reference is None:
            raise fail(f"{config}: the audit needs `reference:` naming the reference endpoint")
        lineup.run.suites = []
        lineup.audit.enabled = True
        if regime:
            bad = [r for r in regime if r not in ("greedy", "sampled")]
            if bad:
                raise fail(f"unknown regime {bad[0]!r}; use greedy or sampled")
            lineup.audit.regimes = list(regime)  # type: ignore[arg-type]
        if budget is not None:
            override(lineup.audit, "budget", budget, "--budget")
        from bakeoff._pipeline import RunError, check_env, check_local

        try:
            check_env(lineup)
            check_local(lineup)
        except RunError as e:
            raise fail(str(e)) from None
        run_id = create_run(store, lineup, str(config))
        status = execute_with_progress(store, run_id, lineup, use_cache=False, quiet=quiet)
        if status != "complete":
            err.print(f"audit {run_id} was interrupted; resume with: bakeoff run --resume {run_id}")
            raise typer.Exit(130)
        verdicts = store.verdicts(run_id)
    console = err if json_out else out
    console.print(verdict_table(run_id, verdicts))
    if json_out:
        sys.stdout.write(
            orjson.dumps(
                {"run_id": run_id, "verdicts": verdicts}, option=orjson.OPT_INDENT_2
            ).decode()
            + "\n"
        )


def verdict_table(run_id: str, verdicts: dict[str, Any]) -> Table:
    t = Table(title=f"fidelity audit, run {run_id}", title_justify="left")
    for col in (
        "endpoint",
        "verdict",
        "p-value",
        "calls",
        "greedy: confident / differ / n",
        "sampled",
        "MMD p",
        "why",
    ):
        t.add_column(col)
    for name, v in verdicts.items():
        g = v["tests"].get("greedy") or {}
        s = v["tests"].get("sampled") or {}
        colour = {"same": "green", "different": "red"}.get(v["verdict"], "yellow")
        why = v["why"] + "".join(f"\n! {f}" for f in v["behaviour"].get("flags", []))
        t.add_row(
            name,
            f"[{colour}]{escape(v.get('claim') or v['verdict'])}[/]",
            f"{v['p_value']:.2g}",
            str(v["calls"]),
            f"{g.get('confident_differ', '-')} / {g['differ']} / {g['n']}" if g else "-",
            f"p={s['p_value']:.2g} n={s['n']}" if s else "-",
            f"{s['mmd_p_value']:.2g}" if s else "-",
            why,
        )
    return t
