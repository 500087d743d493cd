"""Greedy evidence that survives another engine: where two greedy outputs first part, and how sure
the reference was of its own token there.

Two honest deployments of the same weights part at near-ties: another engine, batch size or GPU
rounds the logits differently, and where the reference's top two tokens are a hair apart the argmax
flips. A substitute (a quantization, another template) parts where the reference was confident. So a
divergence counts as evidence only when the reference model prefers its own token over the
candidate's by more than `margin` nats at the first token where the two outputs differ (teacher
forcing on the shared prefix: both log-probabilities are conditioned on the same tokens). The choice
of the margin and the measurements behind it: docs/FIDELITY.md.

Then two one-sided questions on the per-prompt indicator X = "a confident divergence":
- "different": do confident divergences happen more often than between the reference and itself
  (the betting test of `_stats.symmetric_betting_test` on X - Y, Y the reference's own repeat);
- "same within delta": is the rate of confident divergences below delta — an anytime-valid upper
  confidence bound (`rate_upper_bound`), so the claim holds whenever the audit stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from bakeoff.audit._stats import _BETS


@dataclass(frozen=True)
class Divergence:
    """Where a candidate's greedy output first parts from the reference's, under the reference."""

    token: int
    """Index of the first differing token (reference tokenization); -1 when unknown (no scorer)."""
    margin: float | None
    """log p_ref(reference's token) − log p_ref(candidate's token) there, in nats; None when one
    output stops where the other goes on (no token of the candidate's to score)."""
    reference_piece: str
    candidate_piece: str
    reference_repeats: bool
    """The reference's token there already occurs earlier (prompt or output) and the candidate's
    does not: what a repetition penalty on the candidate's side produces."""


def first_divergence(
    scorer: Any,
    prompt_tokens: list[int],
    reference: str,
    candidate: str,
    *,
    reference_finish: str | None = None,
    candidate_finish: str | None = None,
) -> Divergence | None:
    """The first token where `candidate` parts from `reference` and the reference model's margin
    there, or None when they do not part (equal token sequences, or one is the other cut by the
    token limit: `finish_reason` "length" on the shorter one)."""
    rng = np.random.default_rng(0)
    sr = scorer.score(prompt_tokens, reference, rng)
    sc = scorer.score(prompt_tokens, candidate, rng)
    tr, tc = list(sr.tokens), list(sc.tokens)
    j = 0
    while j < len(tr) and j < len(tc) and tr[j] == tc[j]:
        j += 1
    if j == len(tr) and j == len(tc):
        return None
    if j == len(tr) or j == len(tc):
        shorter_finish = reference_finish if j == len(tr) else candidate_finish
        if shorter_finish == "length":
            return None  # cut by max_tokens, not parted: re-tokenized lengths differ
        margin = None
    else:
        margin = float(sr.logprobs[j] - sc.logprobs[j])
    pieces_r = sr.pieces or []
    pieces_c = sc.pieces or []
    context = set(prompt_tokens) | set(tr[:j])
    repeats = j < len(tr) and j < len(tc) and tr[j] in context and tc[j] not in context
    return Divergence(
        token=j,
        margin=margin,
        reference_piece=pieces_r[j] if j < len(pieces_r) else "",
        candidate_piece=pieces_c[j] if j < len(pieces_c) else "<end>",
        reference_repeats=repeats,
    )


def confident(div: Divergence | None, margin: float) -> bool:
    """Counts as evidence about the weights: the reference was sure of its token (or the outputs
    part by one stopping where the other goes on)."""
    if div is None:
        return False
    return div.margin is None or div.margin > margin


# -- "same within delta": an anytime-valid upper confidence bound on a rate ---------------------


def _log_mixture(k: Any, n: Any, delta: float, grid: int = 64) -> Any:
    """log of the e-process for H0: rate >= delta after k events in n Bernoulli trials (k, n
    numbers or arrays of the same shape).

    A mixture of likelihood ratios q^k (1-q)^(n-k) / (delta^k (1-delta)^(n-k)) over alternatives
    q < delta (Robbins 1970; Howard et al. 2021, "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Ann. Statist., §3 conjugate mixtures): half the prior mass on q = 0 (the
    honest twin's rate), half uniform on (0, delta) (a midpoint grid). For q < delta and any true
    rate >= delta each ratio is a nonnegative supermartingale, so is their mixture, and by Ville's
    inequality it crosses 1/alpha with probability at most alpha: the claim "rate < delta" may be
    made at any stopping time."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    base = k * math.log(delta) + (n - k) * math.log1p(-delta)
    at_zero = np.where(k == 0, 0.0, -np.inf)  # q = 0: (1 - 0)^n, zero once an event is seen
    qs = (np.arange(grid) + 0.5) / grid * delta
    lr = k[..., None] * np.log(qs) + (n - k)[..., None] * np.log1p(-qs)
    spread = np.logaddexp.reduce(lr, axis=-1) - math.log(grid)
    out = np.logaddexp(at_zero, spread) + math.log(0.5) - base
    return float(out) if out.ndim == 0 else out


def equivalence_path(x: list[int], delta: float) -> list[float]:
    """The e-process against "rate >= delta" after each observation (x_t in {0, 1})."""
    if not x:
        return []
    n = np.arange(1, len(x) + 1)
    logs = _log_mixture(np.cumsum(x), n, delta)
    return [math.exp(v) for v in np.minimum(logs, 700.0).tolist()]


def rate_upper_bound(x: list[int], alpha: float) -> float:
    """Anytime-valid (1 - alpha) upper confidence bound on the rate of x_t = 1: the smallest delta
    whose e-process has crossed 1/alpha at some time so far (the running intersection of the
    confidence sequence, so the bound only tightens). 1.0 before any observation."""
    if not x:
        return 1.0
    target = math.log(1.0 / alpha)
    counts, n = np.cumsum(x), np.arange(1, len(x) + 1)
    lo, hi = 0.0, 1.0
    for _ in range(30):  # bisection to 1e-9: the e-value grows with delta (checked numerically)
        mid = (lo + hi) / 2
        if np.max(_log_mixture(counts, n, mid)) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def calls_for_equivalence(delta: float, alpha: float, k: int = 0, cap: int = 100000) -> int | None:
    """The fewest greedy calls after which "same within delta" can be said when k of them show a
    confident divergence (exact for this e-process); None past `cap`."""
    target = math.log(1.0 / alpha)
    lo = max(k, 1)
    if _log_mixture(k, cap, delta) < target:
        return None
    hi = cap
    while lo < hi:
        mid = (lo + hi) // 2
        if _log_mixture(k, mid, delta) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- "different": exact power of the greedy betting test -----------------------------------------


@lru_cache(maxsize=256)
def divergences_to_reject(threshold: float) -> int:
    """How many confident divergences (with none on the reference's side) take the greedy betting
    e-process — the mixture of constant bets of `symmetric_betting_test` — to `threshold`.
    Agreements multiply the wealth by 1, so the count is all that matters."""
    k = 0
    while float(np.mean((1.0 + _BETS) ** k)) < threshold:
        k += 1
        if k > 10000:
            raise ValueError(f"threshold {threshold} out of reach")
    return k


def greedy_power(rate: float, n: int, threshold: float) -> float:
    """Exact probability that the greedy test rejects within n calls when each prompt shows a
    confident divergence with probability `rate` and the reference's repeat never does:
    P(Binomial(n, rate) >= divergences_to_reject(threshold))."""
    need = divergences_to_reject(threshold)
    if need > n:
        return 0.0
    from scipy import stats  # imported when used: 0.5 s that every CLI command paid

    return float(stats.binom.sf(need - 1, n, rate))


def expected_calls_to_reject(rate: float, threshold: float) -> float | None:
    """Expected greedy calls until the test rejects at this rate (negative binomial mean)."""
    if rate <= 0:
        return None
    return divergences_to_reject(threshold) / rate


# -- the greedy regime's evidence from stored calls ---------------------------------------------


def _sampler_flag(divs: list[Divergence]) -> str | None:
    """A repetition penalty on the candidate's side shows as divergences where the reference
    repeats a token of the context and the candidate picks one it has not seen; substituted
    weights part both ways. One-sided binomial test of the two kinds of divergence."""
    avoid = sum(d.reference_repeats for d in divs)
    both = [d for d in divs if d.margin is not None]
    if avoid < 5:
        return None
    from scipy import stats

    p = float(stats.binomtest(avoid, len(both), 0.5, alternative="greater").pvalue)
    if avoid / max(len(both), 1) >= 0.7 and p < 0.01:
        return (
            f"sampler: at {avoid} of {len(both)} confident divergences the reference repeats a "
            "token of the context and the candidate avoids it — a repetition penalty the audit "
            "could not switch off; the greedy differences are the sampler's, not evidence about "
            "the weights"
        )
    return None


def _part(scorer: Any, prompt: list[int], a: Any, b: Any, differ: bool) -> Divergence | None:
    """The divergence of answer b from answer a (stored call rows), if their texts differ."""
    if not differ:
        return None
    if scorer is None:  # no reference probabilities: every divergence is taken as confident
        return Divergence(-1, None, "", "", False)
    return first_divergence(
        scorer,
        prompt,
        a["output_text"] or "",
        b["output_text"] or "",
        reference_finish=a["finish_reason"],
        candidate_finish=b["finish_reason"],
    )


def greedy_evidence(
    pairs: list[tuple[Any, Any, Any, Any]],
    scorer: Any,
    *,
    margin: float,
    delta: float,
    alpha: float,
) -> dict[str, Any]:
    """Per prompt (item, reference answer, reference's repeat, candidate answer): does the
    candidate part confidently from the reference (X), does the reference's repeat (Y)? Returns the
    tests' results and the evidence as a JSON-ready dict.

    Without a reference scorer every textual divergence counts (margin 0: the honest-engine
    allowance needs the reference's probabilities). The power of the decision is added by the
    verdict (`_verdict.power`), which knows how many tests it combines."""
    from bakeoff.audit._stats import normalize_text, symmetric_betting_test

    x: list[int] = []
    y: list[int] = []
    divs: list[Divergence] = []
    examples: list[dict[str, Any]] = []
    n_text_diff = n_near_ties = 0
    for it, r0, r1, c0 in pairs:
        rt, rt2, ct = (normalize_text(row["output_text"] or "") for row in (r0, r1, c0))
        prompt = scorer.prompt_tokens(it.messages or []) if scorer is not None else []
        dc = _part(scorer, prompt, r0, c0, rt != ct)
        dr = _part(scorer, prompt, r0, r1, rt != rt2)
        n_text_diff += ct != rt
        xi, yi = int(confident(dc, margin)), int(confident(dr, margin))
        if dc is not None and not xi:
            n_near_ties += 1
        if dc is not None and xi:
            divs.append(dc)
        x.append(xi)
        y.append(yi)
        if dc is not None and len(examples) < 5:
            examples.append(
                {
                    "item": it.id,
                    "prompt": (it.messages or [{}])[-1].get("content"),
                    "reference": r0["output_text"],
                    "candidate": c0["output_text"],
                    "diverges_at_token": dc.token if dc.token >= 0 else None,
                    "margin": None if dc.margin is None else round(dc.margin, 3),
                    "reference_token": dc.reference_piece,
                    "candidate_token": dc.candidate_piece,
                    "confident": bool(xi),
                }
            )
    n = len(x)
    bet = symmetric_betting_test([float(a - b) for a, b in zip(x, y, strict=True)], alpha)
    eq = equivalence_path(x, delta)
    same_at = next((t for t, e in enumerate(eq, 1) if e >= 1.0 / alpha), None)
    k = sum(x)
    return {
        "n": n,
        "differ": n_text_diff,
        "confident_differ": k,
        "near_ties": n_near_ties,
        "reference_repeat_differ": sum(y),
        "margin": margin if scorer is not None else 0.0,
        "disagreement_rate": round(n_text_diff / n, 4) if n else None,
        "p_value": bet.p_value,
        "rejected_at": bet.rejected_at,
        "wealth": bet.wealth,
        "same_within": delta,
        "rate_upper_bound": round(rate_upper_bound(x, alpha), 4),
        "same_at": same_at,
        "calls_for_same": calls_for_equivalence(delta, alpha, k),
        "sampler_flag": _sampler_flag(divs),
        "examples": examples,
    }
