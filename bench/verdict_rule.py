"""The greedy verdict rule at its defaults, exact and simulated: for each cell (a share of outputs
changed, the reference's own repeat rate p_y), the exact Markov chain of `audit/_power.py` beside
seeded audits through the verdict functions themselves (`tests/test_audit_sim.py`: `greedy_tests`,
`decide`, the audit's stop rule), with one Monte Carlo standard error. The table of
docs/FIDELITY.md ("Power of the applied rule").

Usage: PYTHONPATH=src python bench/verdict_rule.py [--reps 1000]   (~6 min on 2 loaded cores)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_audit_sim import Q8_0_LIKE, _chain, _simulate

CELLS = [
    ("route 5% to a Q8_0-like substitute", 0.05 * Q8_0_LIKE),
    ("route 10% to a Q8_0-like substitute", 0.10 * Q8_0_LIKE),
    ("honest engine at the tolerance (θ = τ)", None),
    ("honest engine, no excess", 0.0),
    ("5% of outputs changed", 0.05),
    ("10% of outputs changed", 0.10),
    ("25% of outputs changed", 0.25),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args()
    print(
        "| cell | p_y | P(different) exact | simulated | P(same) exact | simulated "
        "| E[calls] exact | simulated |"
    )
    print("|---|---|---|---|---|---|---|---|")
    seed = 1000
    for p_y in (0.0, 0.1):
        for name, effect in CELLS:
            e = 0.01 / (1 - p_y) if effect is None else effect
            seed += 1
            sim = _simulate(e, p_y, seed=seed, reps=args.reps)
            exact = _chain(e, p_y)

            def se(p: float) -> str:
                return f"{p:.3f} ± {math.sqrt(p * (1 - p) / args.reps):.3f}"

            print(
                f"| {name} | {p_y:.2f} | {exact.different:.3f} | {se(sim['different'])} "
                f"| {exact.same:.4f} | {se(sim['same'])} | {exact.expected_calls:.0f} "
                f"| {sim['calls']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
