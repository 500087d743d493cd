"""`math`: multi-step arithmetic word problems (GSM8K-style), generated from our own templates.

Tiers by the number of steps: `easy` (one addition of one-digit numbers — the local 135M model
clears about one in five),
`medium` (two or three steps), `hard` (four or more steps, larger numbers with thousands separators,
percentages and division that comes out even). Every quantity is drawn from a seeded generator, so a
fresh seed is a fresh, never-published test set. Scored by the number extracted from the reply
(see `extract_number`: "42", "42.0", "$42", "= 42", "**42**", "The answer is 42.", "1,234").
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bakeoff.endpoints import CallResult
from bakeoff.suites._scorers import NumericMatch
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

NAMES = [
    "Ada",
    "Bram",
    "Chiara",
    "Dev",
    "Emeka",
    "Farah",
    "Goran",
    "Hana",
    "Ines",
    "Jun",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tariq",
    "Uma",
    "Vera",
]
THINGS = [
    ("apple", "apples"),
    ("book", "books"),
    ("marble", "marbles"),
    ("stamp", "stamps"),
    ("pencil", "pencils"),
    ("shell", "shells"),
    ("card", "cards"),
    ("coin", "coins"),
]
INSTRUCTION = "Solve the problem. End your reply with the final answer as a number."

Problem = tuple[str, int]


def _fmt(n: int) -> str:
    return f"{n:,}"


def _easy(r: random.Random) -> Problem:
    # one addition of two one-digit numbers: the tier the local 135M model clears now and then
    name = r.choice(NAMES)
    _, many = r.choice(THINGS)
    a, b = r.randint(2, 9), r.randint(2, 9)
    if r.random() < 0.5:
        return (
            f"{name} has {a} {many}. A friend gives {name} {b} more. How many {many} does {name} have now?",
            a + b,
        )
    return (
        f"{name} finds {a} {many} in the morning and {b} {many} in the afternoon. How many {many} did {name} find?",
        a + b,
    )


def _medium(r: random.Random) -> Problem:
    name, other = r.sample(NAMES, 2)
    one, many = r.choice(THINGS)
    kind = r.randrange(3)
    if kind == 0:
        a, b, c = r.randint(10, 40), r.randint(2, 6), r.randint(3, 15)
        return (
            f"{name} has {a} {many}. {other} has {b} times as many as {name}, then loses {c}. "
            f"How many {many} does {other} have now?",
            a * b - c,
        )
    if kind == 1:
        price, qty, paid = r.randint(2, 12), r.randint(2, 8), 100
        return (
            f"A {one} costs ${price}. {name} buys {qty} of them and pays with a ${paid} note. "
            f"How many dollars of change does {name} get?",
            paid - price * qty,
        )
    per_day, days, extra = r.randint(3, 12), r.randint(4, 9), r.randint(5, 20)
    return (
        f"{name} reads {per_day} pages a day for {days} days, then reads {extra} pages on the last "
        f"weekend. How many pages did {name} read in all?",
        per_day * days + extra,
    )


def _hard(r: random.Random) -> Problem:
    name = r.choice(NAMES)
    kind = r.randrange(3)
    if kind == 0:
        total = r.randint(12, 60) * 100
        pct, price = r.choice([5, 10, 20, 25]), r.randint(2, 9)
        broken = total * pct // 100
        return (
            f"A farm packs {_fmt(total)} eggs this month. {pct}% of them break on the road. "
            f"The rest sell at ${price} per dozen, in full dozens only. How many dollars does the "
            f"farm earn?",
            ((total - broken) // 12) * price,
        )
    if kind == 1:
        start, rise, months, spend = (
            r.randint(1000, 9000),
            r.randint(150, 900),
            r.randint(4, 12),
            r.randint(200, 2000),
        )
        return (
            f"{name} has ${_fmt(start)} saved. Each month {name} adds ${rise}. After {months} months "
            f"{name} spends ${_fmt(spend)} on a bike and then splits what is left equally between two "
            f"accounts. How many dollars go into each account (round down)?",
            (start + rise * months - spend) // 2,
        )
    w, h, tile, box, box_price = (
        r.randint(8, 30),
        r.randint(8, 30),
        1,
        r.choice([10, 12, 15, 20]),
        r.randint(18, 60),
    )
    area = w * h
    boxes = -(-area // box)
    return (
        f"A floor is {w} m by {h} m. Each square metre needs {tile} tile; tiles come in boxes of "
        f"{box} and a box costs ${box_price}. {name} buys the fewest whole boxes that cover the floor "
        f"and also pays a ${_fmt(area * 3)} fitting fee. What is the total cost in dollars?",
        boxes * box_price + area * 3,
    )


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "easy": _easy,
    "medium": _medium,
    "hard": _hard,
}


class MathSuite:
    name = "math"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = (
        "Multi-step arithmetic word problems (easy 1 step, medium 2-3, hard 4+), numeric match."
    )
    default_size = 30
    tiers = ("easy", "medium", "hard")

    def __init__(
        self, generators: dict[str, Callable[[random.Random], Problem]] | None = None
    ) -> None:
        self._gen = generators or GENERATORS
        self._scorer = NumericMatch()

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            tier = self.tiers[i % len(self.tiers)]
            text, answer = self._gen[tier](rng("math", seed, i, attempt))
            return Item(
                id=f"math-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": f"{text}\n{INSTRUCTION}"}],
                params={"max_tokens": 256},
                target=answer,
            )

        return unique_items(n, make)

    def score(self, item: Item, result: CallResult) -> list[Score]:
        return [self._scorer(item, result)]

    def reference_reply(self, item: Item) -> Reply:
        return Reply(
            content=f"Working it through step by step.\nThe answer is **{_fmt(item.target)}**."
        )
