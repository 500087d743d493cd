"""Greedy evidence that survives another engine: where two greedy outputs first part, and how sure
the reference was of its own token there.

Two honest deployments of the same weights part at near-ties: another engine, batch size or GPU
rounds the logits differently, and where the reference's top two tokens are a hair apart the argmax
flips. A substitute (a quantization, another template) parts where the reference was confident. So a
divergence counts as evidence only when the reference model prefers its own token over the
candidate's by more than `margin` nats at the first token where the two outputs differ (teacher
forcing on the shared prefix: both log-probabilities are conditioned on the same tokens). The choice
of the margin and the measurements behind it: docs/FIDELITY.md.

Then two one-sided questions on D = X - Y, X = "the candidate parts confidently", Y = the same for
the reference's own repeat, about theta = E[D], the candidate's *excess* rate:
- "different": is theta above the tolerance tau an honest engine gets (`log_different`, a betting
  e-process on the bounded mean against the composite null theta <= tau);
- "same within delta": is theta below delta — an anytime-valid upper confidence bound
  (`excess_upper_bound`), so the claim holds whenever the audit stops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from bakeoff.store import Example, TestEvidence

if TYPE_CHECKING:
    from bakeoff.audit._source import FidelityCall
    from bakeoff.audit._topk import TopK
    from bakeoff.audit._types import ReferenceScorer
    from bakeoff.suites import Item


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
    bound: bool = False
    """`margin` is a lower bound: the candidate's token was not among the reference's top-k
    log-probabilities there (`_topk`), so it is at most the k-th's."""


def first_divergence(
    scorer: ReferenceScorer,
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
    if div.margin is not None and not math.isfinite(div.margin):
        from bakeoff.audit._stats import NonFiniteEvidence

        raise NonFiniteEvidence(
            f"a divergence's margin is {div.margin!r}: refused (never evidence)"
        )
    return div.margin is None or div.margin > margin


# -- the excess rate: e-processes on the counts of D = X - Y in {-1, 0, 1} ---------------------
#
# Per prompt D_t = X_t - Y_t (candidate's confident divergence minus the reference repeat's), and
# theta = E[D_t | past], the candidate's *excess* rate of confident divergences. Both questions are
# bets on the bounded mean of D (Waudby-Smith & Ramdas 2024, "Estimating means of bounded random
# variables by betting", JRSSB 86(1)); with constant bets the wealth depends only on the counts
# a = #{D = +1}, b = #{D = -1} and n, so the same functions serve the audit, the bounds and the
# exact power (`_power`).

_SAME_F = np.concatenate([[1.0], (np.arange(64) + 0.5) / 64])
_SAME_LOGW = np.log(np.concatenate([[0.5], np.full(64, 0.5 / 64)]))
"""Bets against "theta >= m": lambda = f / (1 - m), half the weight on f = 1, half uniform on (0, 1)
(a midpoint grid). With Y = 0 each bet is a Bernoulli likelihood ratio q^X (1-q)^(1-X) /
(m^X (1-m)^(1-X)) at q = m (1 - f): the conjugate mixture of Robbins (1970) and Howard et al.
(2021, Ann. Statist.) with half its mass on q = 0, so "same <=5%" at 0 divergences still takes 68
calls."""

_DIFF_F = np.linspace(0.05, 0.8, 16)
"""Bets against "theta <= tau": lambda = f / (1 + tau), f in {0.05, ..., 0.80}, equal weights
(diversified Kelly, Waudby-Smith & Ramdas)."""


def _logsumexp(terms: np.ndarray) -> Any:
    """log of the sum over the last axis (numpy's logaddexp.reduce is 5x slower)."""
    top = np.max(terms, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = safe + np.log(np.sum(np.exp(terms - safe[..., None]), axis=-1))
    return np.where(np.isfinite(top), out, top)


def log_same(a: Any, b: Any, n: Any, m: float) -> Any:
    """log of the e-process against H0: theta >= m after a divergences of the candidate's alone
    (D = +1), b of the reference repeat's alone (D = -1) in n prompts (numbers or arrays).

    Each bet's factor 1 + f (m - D_t) / (1 - m) is >= 0 for D_t <= 1 and has conditional mean <= 1
    when theta >= m, so every product, and their mixture, is a nonnegative supermartingale: by
    Ville's inequality it crosses 1/alpha with probability <= alpha, and "theta < m" may be claimed
    at any stopping time."""
    if not -1 < m < 1:
        raise ValueError(f"m must be in (-1, 1), got {m}")
    a, b, n = (np.asarray(v, dtype=float)[..., None] for v in (a, b, n))
    lam = _SAME_F / (1 - m)
    with np.errstate(divide="ignore", invalid="ignore"):  # f = 1: the factor at D = +1 is 0
        at_plus = np.where(a > 0, a * np.log1p(-_SAME_F), 0.0)
    terms = at_plus + b * np.log1p(lam * (m + 1)) + (n - a - b) * np.log1p(lam * m) + _SAME_LOGW
    out = _logsumexp(terms)
    return float(out) if out.ndim == 0 else out


def log_different(a: Any, b: Any, n: Any, tau: float) -> Any:
    """log of the e-process against the composite H0: theta <= tau ("at most tau more confident
    divergences than the reference's own repeat": the tolerance an honest engine gets). Factors
    1 + f (D_t - tau) / (1 + tau) >= 1 - f >= 0.2, with mean <= 1 under H0."""
    if not -1 < tau < 1:
        raise ValueError(f"tau must be in (-1, 1), got {tau}")
    a, b, n = (np.asarray(v, dtype=float)[..., None] for v in (a, b, n))
    lam = _DIFF_F / (1 + tau)
    terms = a * np.log1p(lam * (1 - tau)) + b * np.log1p(-lam * (1 + tau))
    terms = terms + (n - a - b) * np.log1p(-lam * tau) - math.log(len(_DIFF_F))
    out = _logsumexp(terms)
    return float(out) if out.ndim == 0 else out


def _counts(x: list[int], y: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running counts (a_t, b_t, t) of D = +1 and D = -1 after each prompt."""
    from bakeoff.audit._stats import finite

    xs, ys = finite(x, "divergences"), finite(y, "divergences")
    if xs.shape != ys.shape or not np.isin(xs, (0, 1)).all() or not np.isin(ys, (0, 1)).all():
        raise ValueError("divergence indicators must be two equal-length sequences of 0/1")
    d = xs - ys
    return np.cumsum(d > 0), np.cumsum(d < 0), np.arange(1, len(d) + 1)


def _turning_points(x: list[int], y: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counts at the only times where either e-process can take its running maximum: every
    factor moves all bets the same way (D = +1 lowers the "same" wealth and raises the "different"
    one, D = -1 the opposite, D = 0 moves each by the sign of m or -tau), so a maximum sits at
    the end or next to a nonzero D. Same bounds, a fraction of the work."""
    a, b, n = _counts(x, y)
    d = np.asarray(x) - np.asarray(y)
    near = (d != 0) | np.append(d[1:] != 0, True)
    return a[near], b[near], n[near]


def _bisect(crossed: Callable[[float], bool], lo: float, hi: float, iters: int = 24) -> float:
    """The boundary of a monotone predicate on (lo, hi): `crossed` false at lo, true at hi."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if crossed(mid):
            hi = mid
        else:
            lo = mid
    return hi


def excess_upper_bound(x: list[int], y: list[int], alpha: float) -> float:
    """Anytime-valid (1 - alpha) upper confidence bound on theta, the candidate's excess rate of
    confident divergences: the smallest m whose e-process (`log_same`) has crossed 1/alpha at some
    time so far (the running intersection; the e-value grows with m). 1.0 with no data."""
    if not x:
        return 1.0
    a, b, n = _turning_points(x, y)
    target = math.log(1.0 / alpha)
    return _bisect(lambda m: bool(np.max(log_same(a, b, n, m)) >= target), -1 + 1e-9, 1 - 1e-9)


def excess_lower_bound(x: list[int], y: list[int], alpha: float) -> float:
    """Anytime-valid (1 - alpha) lower confidence bound on theta: the largest tau whose composite
    null "theta <= tau" the "different" e-process (`log_different`) has rejected; -1 if none.
    "different" at tolerance tau is exactly "this bound is above tau"."""
    if not x:
        return -1.0
    a, b, n = _turning_points(x, y)
    target = math.log(1.0 / alpha)
    return -_bisect(
        lambda t: bool(np.max(log_different(a, b, n, -t)) >= target), -1 + 1e-9, 1 - 1e-9
    )


@lru_cache(maxsize=1024)
def calls_for_equivalence(delta: float, alpha: float, k: int = 0, cap: int = 100000) -> int | None:
    """The fewest greedy calls after which "same within delta" can be said when k of them show a
    confident divergence and the reference's repeat none (exact for this e-process); None past
    `cap`."""
    target = math.log(1.0 / alpha)
    if log_same(k, 0, cap, delta) < target:
        return None
    lo, hi = max(k, 1), cap
    while lo < hi:
        mid = (lo + hi) // 2
        if log_same(k, 0, mid, delta) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


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


def _part(
    scorer: ReferenceScorer | None,
    prompt: list[int],
    a: FidelityCall,
    b: FidelityCall,
    differ: bool,
) -> Divergence | None:
    """The divergence of answer b from answer a (stored call rows), if their texts differ."""
    if not differ:
        return None
    if scorer is None:  # no reference probabilities: every divergence is taken as confident
        return Divergence(-1, None, "", "", False)
    return first_divergence(
        scorer,
        prompt,
        a.output_text or "",
        b.output_text or "",
        reference_finish=a.finish_reason,
        candidate_finish=b.finish_reason,
    )


def greedy_tests(
    x: list[int], y: list[int], *, delta: float, tau: float, alpha: float
) -> TestEvidence:
    """The greedy regime's two questions on the indicators x (candidate parts confidently) and y
    (the reference's repeat does), as the verdict reads them:
    - "different": the e-process against "excess rate theta <= tau" (`log_different`), its path
      and its anytime p-value;
    - "same within delta": the first call at which the e-process against "theta >= delta"
      (`log_same`) crossed 1/alpha, and the anytime-valid bounds on theta.
    Pure: the count-level simulations (tests/test_audit_sim.py) call it on simulated x, y."""
    a, b, n = _counts(x, y)
    log_w = np.minimum(np.asarray(log_different(a, b, n, tau)), 700.0) if len(x) else np.zeros(0)
    wealth = np.exp(log_w).tolist()
    target = math.log(1.0 / alpha)
    same_path = np.asarray(log_same(a, b, n, delta)) if len(x) else np.zeros(0)
    hits = np.flatnonzero(same_path >= target)
    crossed = np.flatnonzero(log_w >= target)
    k = int(sum(x))
    return TestEvidence(
        n=len(x),
        confident_differ=k,
        reference_repeat_differ=int(sum(y)),
        tolerance=tau,
        p_value=min(1.0, 1.0 / max(max(wealth, default=1.0), 1e-300)),
        rejected_at=int(crossed[0]) + 1 if crossed.size else None,
        wealth=wealth,
        same_within=delta,
        rate_upper_bound=round(excess_upper_bound(x, y, alpha), 4),
        excess_lower_bound=round(excess_lower_bound(x, y, alpha), 4),
        same_at=int(hits[0]) + 1 if hits.size else None,
        calls_for_same=calls_for_equivalence(delta, alpha, k),
    )


def greedy_evidence(
    pairs: list[tuple[Item, FidelityCall, FidelityCall, FidelityCall]],
    scorer: ReferenceScorer | None,
    *,
    margin: float,
    delta: float,
    alpha: float,
    tau: float = 0.0,
    top: bool = False,
) -> TestEvidence:
    """Per prompt (item, reference answer, reference's repeat, candidate answer): does the
    candidate part confidently from the reference (X), does the reference's repeat (Y)? Returns the
    tests' results (`greedy_tests`) and the evidence as a JSON-ready dict.

    The margins come from the reference scorer; without one, with `top`, from the reference
    answer's own top-k log-probabilities (`_topk`: a prompt whose reference answer has none usable
    is left out, counted by why); else every textual divergence counts (margin 0: the honest-engine
    allowance needs the reference's probabilities). The power of the decision is added by the
    verdict (`_verdict`), which knows how many tests it combines."""
    from bakeoff.audit._stats import normalize_text
    from bakeoff.audit._topk import reference_topk

    x: list[int] = []
    y: list[int] = []
    divs: list[Divergence] = []
    examples: list[Example] = []
    left_out: dict[str, int] = {}
    n_text_diff = n_near_ties = k = 0
    for it, r0, r1, c0 in pairs:
        rt, rt2, ct = (normalize_text(row.output_text or "") for row in (r0, r1, c0))
        if scorer is None and top:
            ref = reference_topk(r0.logprobs_json, r0.output_text)
            if ref.reason is not None:
                left_out[ref.reason] = left_out.get(ref.reason, 0) + 1
                continue
            k = max(k, ref.k)
            dc = _part_top(ref, r0, c0, rt != ct)
            dr = _part_top(ref, r0, r1, rt != rt2)
        else:
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
            examples.append(_example(it, r0, c0, dc, bool(xi)))
    n = len(x)
    out = greedy_tests(x, y, delta=delta, tau=tau, alpha=alpha)
    out.differ = n_text_diff
    out.near_ties = n_near_ties
    counted = scorer is not None or (top and n > 0)
    out.margin = margin if counted else 0.0
    out.disagreement_rate = round(n_text_diff / n, 4) if n else None
    out.sampler_flag = _sampler_flag(divs)
    out.examples = examples
    if scorer is None and top:
        out.top_k, out.left_out = k or None, left_out
        out.bounded = sum(d.bound for d in divs)
    return out


def _part_top(ref: TopK, a: FidelityCall, b: FidelityCall, differ: bool) -> Divergence | None:
    """The divergence of answer b from the reference's answer a, margins from a's own top-k."""
    from bakeoff.audit._topk import topk_divergence

    if not differ:
        return None
    return topk_divergence(
        ref, b.output_text or "", reference_finish=a.finish_reason, candidate_finish=b.finish_reason
    )


def _example(
    it: Item, r0: FidelityCall, c0: FidelityCall, dc: Divergence, confident: bool
) -> Example:
    """A prompt where the candidate's greedy output parts from the reference's, as shown."""
    return Example(
        item=it.id,
        prompt=(it.messages or [{}])[-1].get("content"),
        reference=r0.output_text,
        candidate=c0.output_text,
        diverges_at_token=dc.token if dc.token >= 0 else None,
        margin=None if dc.margin is None else round(dc.margin, 3),
        reference_token=dc.reference_piece,
        candidate_token=dc.candidate_piece,
        confident=confident,
    )
