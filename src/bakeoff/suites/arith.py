"""`arith`: short arithmetic questions with one numeric answer, scored by exact number match.

A first small suite so that a run yields real scores. Tiers: `easy` (one-digit addition — the local
135M model clears it often), `medium` (two-digit addition/subtraction), `hard` (two operations with
precedence). Prompts are generated from a seed; item ids are stable per seed and index.
"""

from __future__ import annotations

import random

from bakeoff.endpoints import CallResult
from bakeoff.suites._scorers import NumericMatch
from bakeoff.suites._types import Item, Score

_PROMPT = "What is {expr}? Reply with the number only."


def _make(tier: str, rng: random.Random) -> tuple[str, int]:
    if tier == "easy":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"{a} + {b}", a + b
    if tier == "medium":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if rng.random() < 0.5:
            return f"{a} + {b}", a + b
        a, b = max(a, b), min(a, b)
        return f"{a} - {b}", a - b
    a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(2, 30)
    if rng.random() < 0.5:
        return f"{a} * {b} + {c}", a * b + c
    return f"{c} + {a} * {b}", c + a * b


class Arith:
    name = "arith"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "One-line arithmetic (easy/medium/hard), numeric exact match."
    default_size = 30
    tiers = ("easy", "medium", "hard")

    def __init__(self) -> None:
        self._scorer = NumericMatch()

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n
        out = []
        seen: set[str] = set()
        for i in range(n):
            tier = self.tiers[i % len(self.tiers)]
            rng = random.Random(f"arith:{seed}:{i}")
            expr, answer = _make(tier, rng)
            # no duplicate questions in a suite (while the tier has unused ones left)
            for _ in range(100):
                if expr not in seen:
                    break
                expr, answer = _make(tier, rng)
            seen.add(expr)
            out.append(
                Item(
                    id=f"arith-{seed}-{i:04d}",
                    tier=tier,
                    messages=[{"role": "user", "content": _PROMPT.format(expr=expr)}],
                    params={"max_tokens": 16},
                    target=answer,
                    meta={"expr": expr},
                )
            )
        return out

    def score(self, item: Item, result: CallResult) -> list[Score]:
        return [self._scorer(item, result)]
