"""`code`: write-a-function tasks (HumanEval/MBPP-style) with hidden unit tests, run in the sandbox.

Each task family has our own description, a reference implementation and an input generator; the
hidden tests are the reference's outputs on seeded inputs, so they are right by construction.
Function names and constants are drawn per item. The reply's code is taken from its markdown code
block (or the whole reply if it has none) and loaded as a module in the sandbox (`bakeoff.sandbox`:
bubblewrap namespaces, a read-only minimal root, no network, CPU/wall/memory/process limits),
which calls the function on each test's arguments and reports the return values; this process
compares them with the expected values, which never enter the sandbox — so a program printing a
test report of its own gains nothing. pass@1 per call; with repeats, the summary adds unbiased
pass@k.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bakeoff.endpoints import CallResult
from bakeoff.sandbox import Limits, call_function
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items


@dataclass(frozen=True)
class Task:
    key: str
    tier: str
    signature: str
    """With `{f}` for the function name and `{k}` for the constant."""
    describe: str
    solution: str
    """Python source of the reference, same placeholders."""
    inputs: Callable[[random.Random], list[Any]]


def _ints(r: random.Random, n: int, lo: int = -20, hi: int = 50) -> list[int]:
    return [r.randint(lo, hi) for _ in range(n)]


TASKS = [
    Task(
        "add_k",
        "easy",
        "def {f}(x):",
        "returns x plus {k}.",
        "def {f}(x):\n    return x + {k}\n",
        lambda r: [r.randint(-100, 100)],
    ),
    Task(
        "times_k",
        "easy",
        "def {f}(x):",
        "returns x multiplied by {k}.",
        "def {f}(x):\n    return x * {k}\n",
        lambda r: [r.randint(-50, 50)],
    ),
    Task(
        "is_even",
        "easy",
        "def {f}(n):",
        "returns True if the integer n is even, else False.",
        "def {f}(n):\n    return n % 2 == 0\n",
        lambda r: [r.randint(-99, 99)],
    ),
    Task(
        "count_k",
        "medium",
        "def {f}(xs):",
        "returns how many numbers in the list xs are greater than {k}.",
        "def {f}(xs):\n    return sum(1 for x in xs if x > {k})\n",
        lambda r: [_ints(r, r.randint(0, 9))],
    ),
    Task(
        "vowels",
        "medium",
        "def {f}(s):",
        "returns the number of vowels (a, e, i, o, u, either case) in the string s.",
        "def {f}(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n",
        lambda r: ["".join(r.choice("abcdeiouxyzAEIOU ") for _ in range(r.randint(0, 14)))],
    ),
    Task(
        "sum_mult",
        "medium",
        "def {f}(n):",
        "returns the sum of all positive integers below n that are multiples of {k}.",
        "def {f}(n):\n    return sum(i for i in range(1, n) if i % {k} == 0)\n",
        lambda r: [r.randint(0, 200)],
    ),
    Task(
        "rle",
        "hard",
        "def {f}(s):",
        "returns the run-length encoding of s as a string: each run of a repeated character becomes the character followed by the run length, e.g. 'aaab' -> 'a3b1'.",
        "def {f}(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append(s[i] + str(j - i))\n        i = j\n    return ''.join(out)\n",
        lambda r: ["".join(r.choice("aab") * r.randint(1, 3) for _ in range(r.randint(0, 6)))],
    ),
    Task(
        "kth_distinct",
        "hard",
        "def {f}(xs):",
        "returns the {kth} largest distinct value in the list xs, or None if there are fewer than {k} distinct values.",
        "def {f}(xs):\n    d = sorted(set(xs), reverse=True)\n    return d[{k} - 1] if len(d) >= {k} else None\n",
        lambda r: [_ints(r, r.randint(0, 10), 0, 9)],
    ),
    Task(
        "merge",
        "hard",
        "def {f}(intervals):",
        "takes a list of [start, end] integer pairs and returns the list of merged, sorted, non-overlapping intervals (touching intervals like [1, 2] and [2, 3] merge); each result item is a list [start, end].",
        "def {f}(intervals):\n    out = []\n    for s, e in sorted(intervals):\n        if out and s <= out[-1][1]:\n            out[-1][1] = max(out[-1][1], e)\n        else:\n            out.append([s, e])\n    return out\n",
        lambda r: [[sorted(_ints(r, 2, 0, 30)) for _ in range(r.randint(0, 5))]],
    ),
]
NAMES = ["solve", "compute", "transform", "calc", "answer", "process", "evaluate", "do_task"]
TIER_TASKS = {t: [x for x in TASKS if x.tier == t] for t in ("easy", "medium", "hard")}
_FENCE = re.compile(r"```[ \t]*+(?:python3|python|py)?[ \t]*+\n(.*?)```", re.S | re.I)
"""Linear: blanks taken whole (`"```" + spaces` split them between the two `[ \t]*`, quadratic), and
a fence's lazy body stops at the next fence, so only the last can run to the end unanswered."""
_SANDBOX_SLOTS = threading.BoundedSemaphore(2)


def extract_code(text: str, func: str | None = None) -> str:
    """The program in a reply: the fenced block defining `func`, else the first fenced block, else
    the reply itself (an unterminated fence is tolerated)."""
    blocks = _FENCE.findall(text)
    if not blocks and "```" in text:
        tail = text.split("```", 1)[1]
        blocks = [tail.split("\n", 1)[1] if "\n" in tail else ""]
    if func:
        for b in blocks:
            if re.search(rf"^[^\S\n]*+def\s++{re.escape(func)}\s*+\(", b, re.M):
                return b
    return blocks[0] if blocks else text


class TestRun(NamedTuple):
    passed: int
    total: int
    why: str
    """`ok`, or how the program failed (`timeout: …`, `forbidden: …`, `no answers`, …)."""
    isolated: bool
    """Ran in the bubblewrap sandbox (False only under `bakeoff run --unsafe-code`)."""


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def run_tests(
    code: str, func: str, cases: list[dict[str, Any]], limits: Limits | None = None
) -> TestRun:
    """The hidden tests on this code: the program runs in the sandbox, which calls `func` on each
    case's arguments and reports what it returned; the comparison with the expected values happens
    here, and they never enter the sandbox. Whatever the program prints — a forged report included —
    can only be taken as its answers."""
    n = len(cases)
    with _SANDBOX_SLOTS:
        run = call_function(code, func, [c["args"] for c in cases], limits or Limits(wall_s=10))
    res = run.result
    if res.reason != "ok":
        return TestRun(0, n, f"{res.reason}: {res.detail}".strip(": "), res.isolated)
    if run.returns is None:
        return TestRun(
            0, n, "no answers: the program ended before its function was called", res.isolated
        )
    passed, first_failure = 0, ""
    for c, got in zip(cases, run.returns, strict=True):
        expected = json.loads(json.dumps(c["expected"]))  # as stored: tuples are lists
        if got.raised is None and got.value == expected:
            passed += 1
        elif not first_failure:
            what = f"raised {got.raised}" if got.raised else f"returned {_short(got.value)}"
            first_failure = f"; {func}(*{_short(c['args'])}) {what}, expected {_short(expected)}"
    return TestRun(passed, n, "ok" + first_failure, res.isolated)


def isolation_score(isolated: bool) -> Score:
    """Stored with every code score: whether the program ran in the sandbox."""
    detail = "bubblewrap sandbox" if isolated else "UNISOLATED (--unsafe-code)"
    return Score(scorer="isolated", value=float(isolated), detail=detail)


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


class CodeSuite:
    name = "code"
    runs_model_code = True
    description = "Write-a-function tasks with hidden unit tests run in a sandbox; pass@1 (pass@k)."
    default_size = 30
    tiers = ("easy", "medium", "hard")

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            r = rng("code", seed, i, attempt)
            tier = self.tiers[i % 3]
            task = r.choice(TIER_TASKS[tier])
            func, k = (
                r.choice(NAMES),
                r.randint(2, 9) if task.key != "kth_distinct" else r.randint(1, 3),
            )
            src = task.solution.format(f=func, k=k)
            ns: dict[str, Any] = {}
            exec(src, ns)  # our own reference implementation, never model output
            cases = []
            for _ in range(8):
                args = task.inputs(r)
                cases.append({"args": args, "expected": ns[func](*args)})
            sig = task.signature.format(f=func)
            prompt = (
                f"Write a Python function `{sig[4:-1]}` that {task.describe.format(k=k, kth=_ordinal(k))} "
                "Reply with the complete function in a ```python code block."
            )
            return Item(
                id=f"code-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": prompt}],
                params={"max_tokens": 400},
                target={"func": func, "cases": cases},
                meta={"task": task.key, "solution": src},
            )

        return unique_items(n, make)

    def score(self, item: Item, result: CallResult) -> list[Score]:
        func = item.target["func"]
        code = extract_code(result.text, func)
        passed, total, why, isolated = run_tests(code, func, item.target["cases"])
        ok = passed == total and total > 0
        return [
            Score(
                scorer="pass", value=float(ok), passed=ok, detail=f"{passed}/{total} tests; {why}"
            ),
            Score(scorer="tests", value=passed / total if total else 0.0),
            isolation_score(isolated),
        ]

    async def ascore(self, item: Item, result: CallResult) -> list[Score]:
        return await asyncio.to_thread(self.score, item, result)

    def reference_reply(self, item: Item) -> Reply:
        return Reply(content=f"Here is the function:\n\n```python\n{item.meta['solution']}```\n")

    def wrong_reply(self, item: Item) -> Reply:
        func = item.target["func"]
        return Reply(content=f"```python\ndef {func}(*args):\n    return 'wrong'\n```")
