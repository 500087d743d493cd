"""`bakeoff suites`: list the suites, or print some items of one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from bakeoff.cli._common import fail, out
from bakeoff.lineups import LineupError
from bakeoff.plugins import UnknownPluginError, load
from bakeoff.plugins import suites as all_suites
from bakeoff.runs import suite_for
from bakeoff.suites.datasets import DatasetError

app = typer.Typer(
    help="List the suites, or show items of one.",
    invoke_without_command=True,
    no_args_is_help=False,
)

_LINEUP = typer.Option(None, "--lineup", "-l", help="Also list this lineup's own datasets.")


def _lineup(path: Path | None) -> Any:
    from bakeoff.lineups import Lineup

    if path is None:
        return Lineup.model_validate({"endpoints": [{"name": "none", "provider": "fake"}]})
    try:
        return load(path)
    except LineupError as e:
        raise fail(str(e)) from None


@app.callback()
def suites(
    ctx: typer.Context,
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    lineup: Path | None = _LINEUP,
) -> None:
    """List the available suites with their item counts per tier."""
    if ctx.invoked_subcommand is not None:
        return
    lu = _lineup(lineup)
    t = Table(title="suites", title_justify="left")
    for col in ("name", "items", "tiers", "description"):
        t.add_column(col)
    named = {**all_suites(), **{d.name: None for d in lu.datasets}}
    for name in sorted(named):
        try:
            s = suite_for(lu, name)
            items = s.items(seed=seed)
        except DatasetError as e:
            t.add_row(name, "-", "-", f"[red]{e}[/]")
            continue
        tiers = Counter(it.tier for it in items)
        t.add_row(
            name, str(len(items)), ", ".join(f"{k} {v}" for k, v in tiers.items()), s.description
        )
    out.print(t)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Suite name."),
    n: int = typer.Option(3, "--n", "-n", help="How many items to print."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    tier: str | None = typer.Option(None, "--tier", help="Only items of this tier."),
    json_out: bool = typer.Option(False, "--json", help="Print the items as JSON lines."),
    lineup: Path | None = _LINEUP,
) -> None:
    """Print items of a suite: the messages sent, the parameters and the expected answer."""
    lu = _lineup(lineup)
    try:
        suite = suite_for(lu, name)
        items = suite.items(seed=seed)
    except UnknownPluginError as e:
        raise fail(str(e)) from None
    except DatasetError as e:
        raise fail(str(e)) from None
    if tier:
        items = [it for it in items if it.tier == tier]
    for it in items[:n]:
        if json_out:
            out.print_json(orjson.dumps(it.stored()).decode())
            continue
        body = []
        for m in it.messages or [{"role": "user", "content": it.prompt}]:
            content = m.get("content")
            if m.get("tool_calls"):
                content = f"(tool calls) {orjson.dumps(m['tool_calls']).decode()}"
            body.append(f"[bold]{m['role']}[/]: {escape(str(content))}")
        extra = {k: v for k, v in it.params.items() if k != "tools"}
        if "tools" in it.params:
            extra["tools"] = [t["function"]["name"] for t in it.params["tools"]]
        body.append(f"[dim]params[/]: {escape(orjson.dumps(extra).decode())}")
        target = orjson.dumps(it.target).decode()
        body.append(f"[dim]expected[/]: {escape(target[:600])}{'…' if len(target) > 600 else ''}")
        out.print(
            Panel(
                "\n".join(body), title=f"{it.id} [{it.tier}]", title_align="left", highlight=False
            )
        )
