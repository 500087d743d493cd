"""False-positive rate and power of the fidelity audit on the local ladder, per test, regime and
budget: the same as `bakeoff calibrate` (see `bakeoff.audit._calibrate` for the method).

Usage: python bench/fidelity_power.py [--greedy-pool 40] [--sampled-pool 150] [--reps 40] [--json F]
Takes ~20-30 min on 2 cores (collecting the pools dominates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bakeoff.audit._calibrate import calibrate, format_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--greedy-pool", type=int, default=40)
    ap.add_argument("--sampled-pool", type=int, default=150)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = calibrate(
        greedy_pool=args.greedy_pool,
        sampled_pool=args.sampled_pool,
        reps=args.reps,
        alpha=args.alpha,
    )
    print()
    print(format_table(results, args.alpha, args.reps))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
