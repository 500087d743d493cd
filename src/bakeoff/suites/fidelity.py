"""The fidelity audit's prompts (suites `fidelity.greedy` and `fidelity.sampled`, judged by `bakeoff.audit`):
short, open-ended requests in our own words, generated from a seed.

Open-ended prompts give the model room to show its distribution (a quantized model diverges on them
sooner than on closed questions). Stable ids: `fid-<seed>-<index>`.
"""

from __future__ import annotations

import random

from bakeoff.lineups import purposes
from bakeoff.suites import Item

_TEMPLATES = [
    "Write two sentences about {t}.",
    "Describe {t} to a child.",
    "Give three facts about {t}.",
    "What is the most surprising thing about {t}?",
    "Write a short poem about {t}.",
    "Explain why people care about {t}.",
    "Tell a very short story involving {t}.",
    "List some words you associate with {t}.",
    "How would you explain {t} in one paragraph?",
    "Write a friendly note about {t}.",
]
_MORE_TEMPLATES = [
    "Imagine you are visiting {t}. What do you notice first?",
    "Write a haiku about {t}.",
    "What would a scientist find interesting about {t}?",
    "Give a short, vivid description of {t}.",
    "Write the opening line of a novel about {t}.",
    "What could go wrong with {t}, and why?",
    "Compare {t} with something very different.",
    "Write a short dialogue between two friends about {t}.",
    "Share a piece of advice that involves {t}.",
    "Describe {t} using all five senses.",
]
_TOPICS = [
    "the sea",
    "bread",
    "winter",
    "a lighthouse",
    "bicycles",
    "the moon",
    "coffee",
    "rivers",
    "libraries",
    "volcanoes",
    "honey bees",
    "trains",
    "gardens",
    "clouds",
    "chess",
    "maps",
    "the desert",
    "music lessons",
    "a lost key",
    "autumn leaves",
    "paper boats",
    "thunderstorms",
    "a small town",
    "old clocks",
    "mountains",
    "soup",
    "kites",
    "the night sky",
    "a market",
    "birds",
    "snow",
    "a bridge",
    "tea",
    "forests",
    "islands",
    "a museum",
    "lemons",
    "owls",
    "candles",
    "a garden party",
]
_MORE_TOPICS = [
    "glaciers",
    "a bakery",
    "foxes",
    "a train station",
    "rain",
    "lanterns",
    "the harbour",
    "a violin",
    "wolves",
    "a meadow",
    "sunflowers",
    "a tunnel",
    "whales",
    "a windmill",
    "a puzzle",
    "the first day of school",
    "a picnic",
    "pebbles",
    "a typewriter",
    "a waterfall",
    "the city at night",
    "a notebook",
    "fireflies",
    "a castle",
    "strawberries",
    "a ferry",
    "a telescope",
    "the wind",
    "a village fair",
    "penguins",
    "a recipe",
    "a street musician",
    "a quiet morning",
    "an old photograph",
    "a canyon",
    "a letter",
    "deer",
    "a lake",
    "pumpkins",
    "a hot air balloon",
]


def audit_items(
    regime: str,
    *,
    seed: int = 0,
    n: int = 200,
    max_tokens: int = 48,
    logprobs: bool = False,
    top_p: float = 0.95,
) -> list[Item]:
    """`n` distinct prompts (distinct while templates × topics last: 1,600), in a seeded order;
    sampled calls ask for T=1 with nucleus `top_p`; with `logprobs`, also for the
    log-probabilities of the sampled tokens.

    The first 400 of a seed are the first templates × topics, in the order they always had (stored
    audits re-analyse alike); the combinations added later follow in their own seeded order."""
    combos = [(tp, tc) for tp in _TEMPLATES for tc in _TOPICS]
    random.Random(f"fidelity:{seed}").shuffle(combos)
    more = [
        (tp, tc)
        for tp in _TEMPLATES + _MORE_TEMPLATES
        for tc in _TOPICS + _MORE_TOPICS
        if tp in _MORE_TEMPLATES or tc in _MORE_TOPICS
    ]
    random.Random(f"fidelity:{seed}:more").shuffle(more)
    combos += more
    items = []
    for i in range(n):
        tp, tc = combos[i % len(combos)]
        items.append(
            Item(
                id=f"fid-{seed}-{i:04d}",
                tier=regime,
                messages=[{"role": "user", "content": tp.format(t=tc)}],
                params={
                    **purposes.audit_regime(regime),
                    "max_tokens": max_tokens,
                    **({"top_p": top_p} if regime == "sampled" else {}),
                    **(
                        {"logprobs": True, "top_logprobs": 1}
                        if logprobs and regime == "sampled"
                        else {}
                    ),
                },
                meta={"regime": regime},
            )
        )
    return items


class FidelitySuite:
    """The audit's prompts as a suite, so audit calls are stored and traced like any other.

    Not scored for quality: the audit's statistics judge them (see `bakeoff.audit`)."""

    default_size = 30
    tiers: tuple[str, ...] = ()
    linear_scoring = True  # nothing to score (runs._scoring)

    def __init__(self, regime: str) -> None:
        self.regime = regime
        self.name = f"fidelity.{regime}"
        self.description = f"Fidelity audit prompts, {regime} regime (used by `bakeoff audit`)."
        self.tiers = (regime,)

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        return audit_items(self.regime, seed=seed, n=n or self.default_size)

    def score(self, item: Item, result: object) -> list[object]:
        return []
