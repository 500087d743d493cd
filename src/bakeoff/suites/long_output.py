"""`long-output`: "produce N numbered items following a rule" — does the endpoint really write long?

Each item asks for N numbered lines (`short`: a word 3-6 times as a numbered list; `medium` 30-60
and `long` 150-300 lines following a rule: i × k, or the next word of a three-word cycle).
Score: all N lines present and correct (primary), the fraction present, elision ("... and so on",
"etc.", a skipped range) flagged, and `finish_reason` — a `length` stop below the claimed output
limit means the endpoint cut the answer.
"""

from __future__ import annotations

import re

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

_ELISION = re.compile(
    r"\.\.\.|…|\band so on\b|\betc\.?|\bcontinu(e|ing) (this|the) pattern\b", re.I
)
_LINE = re.compile(r"^[^\S\n]*+(\d++)[.):]\s*+(.*)$", re.M)
r"""Leading blanks within the line (`^\s*` ran on through every blank line below each one)."""
COLORS = ["red", "blue", "green", "gold", "gray"]


class LongOutputSuite:
    name = "long-output"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "N numbered lines following a rule: all present, no elision, finish_reason."
    default_size = 9
    tiers = ("short", "medium", "long")

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            r = rng("long-output", seed, i, attempt)
            tier = self.tiers[i % 3]
            count = {
                "short": r.randint(3, 6),
                "medium": r.randint(30, 60),
                "long": r.randint(150, 300),
            }[tier]
            if tier == "short":
                word = r.choice(COLORS)
                prompt = (
                    f"Write the word {word} {count} times, as a numbered list from 1 to {count}."
                )
                target = {"kind": "cycle", "cycle": [word], "n": count}
            elif r.random() < 0.5:
                k = r.randint(2, 9)
                rule = f"line i is the number i, a period, a space, and then i multiplied by {k}"
                example = f"1. {k}\n2. {2 * k}\n3. {3 * k}"
                target = {"kind": "mult", "k": k, "n": count}
            else:
                cycle = r.sample(COLORS, 3)
                rule = (
                    "line i is the number i, a period, a space, and then the next word of the cycle "
                    + ", ".join(cycle)
                )
                example = f"1. {cycle[0]}\n2. {cycle[1]}\n3. {cycle[2]}\n4. {cycle[0]}"
                target = {"kind": "cycle", "cycle": cycle, "n": count}
            if tier != "short":
                prompt = (
                    f"Write exactly {count} numbered lines, from 1 to {count}, where {rule}. "
                    f"Write every line; do not skip or abbreviate. It starts like this:\n{example}"
                )
            return Item(
                id=f"long-output-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": prompt}],
                params={"max_tokens": count * 8 + 32},
                target=target,
                meta={"lines": count},
            )

        return unique_items(n, make)

    @staticmethod
    def expected_line(t: dict, i: int) -> str:
        return str(i * t["k"]) if t["kind"] == "mult" else t["cycle"][(i - 1) % len(t["cycle"])]

    def score(self, item: Item, result: CallResult) -> list[Score]:
        t = item.target
        got = {int(m.group(1)): m.group(2).strip() for m in _LINE.finditer(result.text)}
        good = sum(
            1
            for i in range(1, t["n"] + 1)
            if i in got
            and re.fullmatch(rf"\W*{re.escape(self.expected_line(t, i))}\W*", got[i], re.I)
        )
        present = sum(1 for i in range(1, t["n"] + 1) if i in got)
        elided = bool(_ELISION.search(result.text))
        ok = good == t["n"] and not elided
        notes = [f"{good}/{t['n']} lines right", f"finish_reason {result.finish_reason}"]
        if elided:
            notes.append("elision")
        if result.completion_tokens is not None:
            notes.append(f"{result.completion_tokens} tokens produced")
        return [
            Score(scorer="complete", value=float(ok), passed=ok, detail="; ".join(notes)),
            Score(scorer="lines_present", value=present / t["n"]),
            Score(scorer="no_elision", value=float(not elided), passed=not elided),
            Score(
                scorer="stopped_naturally",
                value=float(result.finish_reason == "stop"),
                passed=result.finish_reason == "stop",
            ),
        ]

    def reference_reply(self, item: Item) -> Reply:
        t = item.target
        return Reply(
            content="\n".join(f"{i}. {self.expected_line(t, i)}" for i in range(1, t["n"] + 1))
        )
