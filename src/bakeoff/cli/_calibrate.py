"""`bakeoff calibrate`: the audit's false-positive rate and power on known answers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bakeoff.cli._common import err, fail, out


def calibrate(
    greedy_pool: int = typer.Option(40, help="Prompts in the greedy pool (0 skips the regime)."),
    sampled_pool: int = typer.Option(200, help="Prompts in the sampled pool (0 skips the regime)."),
    reps: int = typer.Option(40, help="Audits drawn from the pools per cell."),
    alpha: float = typer.Option(0.05, help="Significance level."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON here."),
    keep: Path | None = typer.Option(
        None,
        help="Keep the pools and their scores in this directory (default: a temporary one); "
        "the same directory again resumes an interrupted calibration, or re-analyses a finished "
        "one without a new call.",
    ),
) -> None:
    """Run the audit on known answers (null pairs and known distortions of the local lineup) and
    print, per test and budget, the false-positive rate and the power. Takes ~70-90 min."""
    from bakeoff.audit._calibrate import calibrate as run_calibration
    from bakeoff.audit._calibrate import format_table
    from bakeoff.local import AssetError, ServerError

    try:
        results = run_calibration(
            greedy_pool=greedy_pool,
            sampled_pool=sampled_pool,
            reps=reps,
            alpha=alpha,
            db_dir=keep,
            log=lambda m: err.print(m),
        )
    except (AssetError, ServerError) as e:
        raise fail(str(e)) from None
    out.print(format_table(results, alpha, reps), highlight=False)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
