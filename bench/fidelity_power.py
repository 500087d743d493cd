"""False-positive rate and power of the fidelity audit on the local ladder, per test, regime and
budget: the same as `bakeoff calibrate` (see `bakeoff.audit._calibrate` for the method).

Usage: python bench/fidelity_power.py [--greedy-pool 40] [--sampled-pool 200] [--reps 40] [--json F]
    [--keep DIR]
Takes ~70-90 min on 2 cores (66 min with --sampled-pool 150: collecting the pools 40, scoring
the samples under three models 24). With --keep DIR, the same command again resumes an interrupted
calibration, or re-analyses a finished one from the kept pools and scores (1.5 min, no call).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bakeoff.audit._calibrate import calibrate, format_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--greedy-pool", type=int, default=40)
    ap.add_argument("--sampled-pool", type=int, default=200)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the pools' databases in this directory")
    args = ap.parse_args()
    results = calibrate(
        greedy_pool=args.greedy_pool,
        sampled_pool=args.sampled_pool,
        reps=args.reps,
        alpha=args.alpha,
        db_dir=args.keep,
    )
    print()
    print(format_table(results, args.alpha, args.reps))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
