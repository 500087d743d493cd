"""`bakeoff calibrate`: the audit's false-positive rate and power on known answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from bakeoff.cli._common import err, fail, out


def calibrate(
    reps: int = typer.Option(10, min=1, help="Independent audits per endpoint and regime."),
    greedy_budget: int | None = typer.Option(
        None,
        min=0,
        help="Calls per greedy audit (default: the audit's own default budget, 400; 0 skips the "
        "regime).",
    ),
    sampled_budget: int = typer.Option(
        100, min=0, help="Calls per sampled audit (0 skips the regime)."
    ),
    endpoints: str | None = typer.Option(
        None, help="Comma-separated candidates to calibrate (default: all of them)."
    ),
    alpha: float = typer.Option(0.05, min=1e-9, max=0.5, help="Significance level."),
    scorer: str = typer.Option(
        "local",
        help="Where the greedy margins come from: `local` (the reference's GGUF, in-process) or "
        "`top_logprobs` (no scorer: the reference endpoint's own top-5, as for a hosted "
        "reference; greedy only).",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
    keep: Path | None = typer.Option(
        None,
        help="Keep every audit's database in this directory (default: a temporary one); the "
        "same directory again resumes an interrupted calibration, or re-reads a finished one "
        "without a new call.",
    ),
) -> None:
    """Audit endpoints whose truth is known — the same weights on other engines, precisions and
    batch sizes (nulls), quantizations and silent distortions of the local lineup — in `reps`
    independent audits each (disjoint prompts, fresh samples), and print how often each verdict
    came, with exact 95% intervals. At the audit's defaults (greedy, budget 400, "same" bounded at
    1%) a null needs ~350 calls to be "same": ~25 min per repetition of the nulls and the ladder on
    2 cores; `--keep DIR` makes it resumable."""
    from bakeoff.audit._calibrate import ENDPOINTS, SCORERS, format_table, write_json
    from bakeoff.audit._calibrate import calibrate as run_calibration
    from bakeoff.local import AssetError, ServerError

    names = [n.strip() for n in endpoints.split(",") if n.strip()] if endpoints else None
    unknown = [n for n in names or [] if n not in ENDPOINTS]
    if unknown:
        raise fail(f"--endpoints: unknown {', '.join(unknown)}; choose from {', '.join(ENDPOINTS)}")
    if scorer not in SCORERS:
        raise fail(f"--scorer: {scorer!r} is not one of {', '.join(SCORERS)}")
    if scorer != "local" and sampled_budget:
        raise fail(
            f"the sampled regime needs a token scorer: --sampled-budget 0 with --scorer {scorer}"
        )
    if greedy_budget == 1 or sampled_budget == 1:
        raise fail("a budget is 0 (skip the regime) or at least 2")
    try:
        results = run_calibration(
            reps=reps,
            greedy_budget=greedy_budget,
            sampled_budget=sampled_budget,
            endpoints=names,
            alpha=alpha,
            db_dir=keep,
            log=lambda m: err.print(m),
            scorer=scorer,
        )
    except (AssetError, ServerError) as e:
        raise fail(str(e)) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        kept = (
            f"the calls made are stored in {keep}: the same command goes on from them"
            if keep
            else "without --keep DIR, nothing was kept"
        )
        raise fail(f"interrupted; {kept}", 130) from None
    out.print(format_table(results), highlight=False)
    if json_out:
        write_json(results, json_out)
