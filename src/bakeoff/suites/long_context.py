"""`long-context`: needle retrieval in generated filler at doubling lengths.

Items at context lengths 256, 512, 1024, ... up to the largest claimed context in the lineup (option
`max_context`; an endpoint's own `context` claim skips longer items for it). `single` hides one
needle; `multi` hides three (start, middle, end); the position of a single needle cycles through
start / middle / end. Each needle is "The secret code for <name> is <number>." and the question asks
for them all. Score: the fraction of needles returned (primary: all of them). The summary reports
each endpoint's effective context (the longest length where every item was fully answered) and flags
silent truncation: early needles lost while the last one is found, or `usage.prompt_tokens` far below
the expected count.
"""

from __future__ import annotations

import random
import re

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

_FILLER = [
    "The morning market opened slowly as traders arranged their baskets of fruit.",
    "A light wind moved through the square and carried the smell of fresh bread.",
    "Children walked to school along the river, counting the boats that passed.",
    "In the afternoon the library was quiet except for the turning of pages.",
    "Clouds gathered over the hills, but the rain stayed away until evening.",
    "An old clock in the tower rang every hour, a little late as always.",
    "The baker closed early and left a note saying he had gone fishing.",
    "Along the coast the lighthouse keeper painted the railings a bright green.",
]
LABELS = ["amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo"]
CHARS_PER_TOKEN = 4.0
"""A conservative estimate for English prose with modern BPE vocabularies (SmolLM2 measured ~4.3)."""


def needle(label: str, code: int) -> str:
    return f"The secret code for {label} is {code}."


def build_haystack(r: random.Random, tokens: int, needles: list[tuple[float, str]]) -> str:
    """Filler of about `tokens` tokens with each needle inserted at its relative position."""
    target_chars = int(tokens * CHARS_PER_TOKEN)
    sents: list[str] = []
    size = 0
    while size < target_chars:
        s = r.choice(_FILLER)
        sents.append(s)
        size += len(s) + 1
    for pos, text in sorted(needles, reverse=True):
        sents.insert(min(len(sents), int(pos * len(sents))), text)
    return " ".join(sents)


def lengths_up_to(max_context: int) -> list[int]:
    out, n = [], 256
    while n <= max_context:
        out.append(n)
        n *= 2
    return out


class LongContextSuite:
    name = "long-context"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "Needle retrieval (single/multi) at doubling lengths up to the claimed context."
    default_size = 12
    tiers = ("single", "multi")

    def items(self, *, seed: int, n: int | None = None, max_context: int = 2048) -> list[Item]:
        lengths = lengths_up_to(max_context)
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            r = rng("long-context", seed, i, attempt)
            length = lengths[i % len(lengths)]
            tier = self.tiers[(i // len(lengths)) % 2]
            labels = r.sample(LABELS, 3 if tier == "multi" else 1)
            codes = [r.randint(1000, 9999) for _ in labels]
            positions = (
                [0.02, 0.5, 0.97]
                if tier == "multi"
                else [[0.02, 0.5, 0.97][(i // len(lengths) // 2) % 3]]
            )
            # leave room for the question, the chat template and the answer
            body_tokens = int(length * 0.8) - 60
            hay = build_haystack(
                r,
                body_tokens,
                [(p, needle(lb, c)) for p, lb, c in zip(positions, labels, codes, strict=True)],
            )
            ask = ", ".join(labels)
            prompt = (
                f"Read the text below and remember every secret code in it.\n\n{hay}\n\n"
                f"What is the secret code for {ask}? Answer with the label and code for each."
            )
            return Item(
                id=f"long-context-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": prompt}],
                params={"max_tokens": 48},
                target=[
                    {"label": lb, "code": c, "position": p}
                    for lb, c, p in zip(labels, codes, positions, strict=True)
                ],
                meta={
                    "context_tokens": length,
                    "expected_prompt_tokens": int(len(prompt) / CHARS_PER_TOKEN),
                },
            )

        return unique_items(n, make)

    def score(self, item: Item, result: CallResult) -> list[Score]:
        found = [bool(re.search(rf"\b{n['code']}\b", result.text)) for n in item.target]
        frac = sum(found) / len(found)
        truncated = False
        notes = []
        if len(found) > 1 and not found[0] and found[-1]:
            truncated = True
            notes.append("early needle lost while the last was found")
        exp = item.meta.get("expected_prompt_tokens")
        if result.prompt_tokens is not None and exp and result.prompt_tokens < 0.6 * exp:
            truncated = True
            notes.append(f"usage.prompt_tokens {result.prompt_tokens} far below ~{exp} expected")
        detail = f"{sum(found)}/{len(found)} needles at {item.meta['context_tokens']} tokens"
        if notes:
            detail += "; possible silent truncation: " + "; ".join(notes)
        return [
            Score(scorer="all_needles", value=float(all(found)), passed=all(found), detail=detail),
            Score(scorer="needles", value=frac),
            Score(scorer="truncation_suspected", value=float(truncated), passed=not truncated),
        ]

    def reference_reply(self, item: Item) -> Reply:
        return Reply(content="; ".join(f"{n['label']}: {n['code']}" for n in item.target))
