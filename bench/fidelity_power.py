"""False-positive rate and power of the fidelity audit on the local ladder: the same as `bakeoff
calibrate` (see `bakeoff.audit._calibrate` for the method): independent audits per endpoint and
regime, each rate with its Clopper–Pearson 95% interval.

Usage: python bench/fidelity_power.py [--reps 10] [--greedy-budget 400] [--sampled-budget 100]
    [--endpoints a,b] [--json F] [--keep DIR]
With --keep DIR, the same command again resumes an interrupted calibration, or re-reads a finished
one without a call.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bakeoff.audit._calibrate import calibrate, format_table, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--greedy-budget", type=int, default=None, help="default: the audit's budget")
    ap.add_argument("--sampled-budget", type=int, default=100)
    ap.add_argument("--endpoints", help="comma-separated candidates (default: all)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep every audit's database in this directory")
    args = ap.parse_args()
    results = calibrate(
        reps=args.reps,
        greedy_budget=args.greedy_budget,
        sampled_budget=args.sampled_budget,
        endpoints=args.endpoints.split(",") if args.endpoints else None,
        alpha=args.alpha,
        db_dir=args.keep,
    )
    print()
    print(format_table(results))
    if args.json:
        write_json(results, args.json)


if __name__ == "__main__":
    main()
