"""The fidelity audit's prompts (suites `fidelity.greedy` and `fidelity.sampled`, judged by `bakeoff.audit`):
short, open-ended requests drawn from a large private space by a per-audit seed (`_prompt_space`),
or the user's own prompt file.

Open-ended prompts give the model room to show its distribution (a quantized model diverges on them
sooner than on closed questions). Stable ids: `fid-<seed>-<index>`.
"""

from __future__ import annotations

import random

from bakeoff.lineups import AuditSettings, purposes
from bakeoff.suites import Item
from bakeoff.suites._prompt_space import draw_prompts, read_prompt_file

UNSEEDED = 0
"""The prompts' seed where neither the caller nor the settings give one (an audit draws its own
private seed before it asks for its prompts: `audit.applied_settings`)."""


def audit_items(
    regime: str,
    settings: AuditSettings | None = None,
    *,
    seed: int | None = None,
    n: int | None = None,
) -> list[Item]:
    """`n` (default: `settings.budget`) distinct prompts drawn from the private prompt space by
    `seed` (default: `settings.seed`, else `UNSEEDED`) (`_prompt_space`), or from the user's own
    `settings.prompts` file in an order seeded by `seed`; every call asks for `settings.max_tokens`,
    sampled calls for T=1 with nucleus `settings.top_p` and, with `settings.logprobs`, the
    log-probabilities of the sampled tokens. `settings`: the lineup's `audit:` (default: its
    defaults, `AuditSettings()`).

    Prompt i depends on the seed and i alone, so a longer audit of a seed extends a shorter one
    (calibration takes disjoint slices of one sequence)."""
    settings = settings or AuditSettings()
    seed = seed if seed is not None else (settings.seed or UNSEEDED)
    n = n if n is not None else settings.budget
    max_tokens, top_p, logprobs = settings.max_tokens, settings.top_p, settings.logprobs
    if settings.prompts is not None:
        texts = read_prompt_file(settings.prompts)
        random.Random(f"fidelity-file:{seed}").shuffle(texts)
        texts = texts[:n]
    else:
        texts = draw_prompts(seed, n)
    items = []
    for i, content in enumerate(texts):
        messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
        items.append(
            Item(
                id=f"fid-{seed}-{i:04d}",
                tier=regime,
                messages=messages,
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
        self.name = purposes.fidelity_suite(regime)
        self.description = f"Fidelity audit prompts, {regime} regime (used by `bakeoff audit`)."
        self.tiers = (regime,)

    def items(
        self,
        *,
        seed: int,
        n: int | None = None,
        draws: list[list[int]] | None = None,
        only: list[str] | None = None,
    ) -> list[Item]:
        """`n` prompts of `seed`; or, with the option `draws` (`[[seed, n], ...]`), the first `n`
        prompts of each seed in turn — what `bakeoff watch` asks at a check: its anchors (the same
        every check) and the check's own rotating prompts. `only`: just the items of these ids
        (the watch's re-check of the anchors that changed)."""
        if draws:
            got = [it for s, k in draws for it in audit_items(self.regime, seed=s, n=k)]
        else:
            got = audit_items(self.regime, seed=seed, n=n or self.default_size)
        if only is not None:
            keep = set(only)
            got = [it for it in got if it.id in keep]
        return got

    def score(self, item: Item, result: object) -> list[object]:
        return []
