from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from bakeoff.cli._common import out
from bakeoff.plugins import suites as all_suites


def suites(
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
) -> None:
    """List the available suites with their item counts per tier."""
    t = Table(title="suites", title_justify="left")
    for col in ("name", "items", "tiers", "description"):
        t.add_column(col)
    for name, s in sorted(all_suites().items()):
        tiers = Counter(it.tier for it in s.items(seed=seed))
        t.add_row(
            name,
            str(sum(tiers.values())),
            ", ".join(f"{k} {v}" for k, v in tiers.items()),
            s.description,
        )
    out.print(t)
