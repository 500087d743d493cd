"""The power of the greedy rule as the audit applies it, exactly: a Markov chain over the counts.

The greedy e-processes (`_greedy.log_different`, `_greedy.log_same`) depend only on the counts
(a, b) of prompts where the candidate alone parts confidently (D = +1) and where the reference's
own repeat alone does (D = -1) after n prompts. So the whole applied rule — the reference's own
noise (Y), "different" at the tolerance tau, "same" below delta, looks after every `batch`
prompts, the stop at the first decision, the budget — is a Markov chain on (a, b), and its
rejection probability and expected calls are computed exactly (up to the mass of b beyond a bound
where the reference's repeat would part more than 1e-12 likely; that mass is returned).

The model of an effect: a share `effect` of the candidate's outputs is changed (served by a
substitute that parts confidently from the reference there); elsewhere it parts as the reference's
repeat does, with probability p_y. X ~ Bernoulli(1 - (1 - effect)(1 - p_y)), Y ~ Bernoulli(p_y),
independent; the excess rate is effect * (1 - p_y).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bakeoff.audit._greedy import log_different, log_same


@dataclass(frozen=True)
class Power:
    """The applied rule's operating characteristics at one effect."""

    effect: float
    different: float
    """P(decided "different" within the budget)."""
    same: float
    """P(decided "same")."""
    expected_calls: float
    """E[greedy calls until decided, or the budget]."""
    truncated: float
    """Probability mass left out (reference repeats beyond the chain's bound): the error bound."""


def _bisect_counts(
    lo: np.ndarray, hi: np.ndarray, true_at: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Vectorised integer bisection of a predicate that is false at lo and true from some point
    up to hi: that point, per entry."""
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        ok = true_at(mid)
        active = hi - lo > 1
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid, lo)
    return hi


@lru_cache(maxsize=16)
def _tables(
    budget: int, tau: float, delta: float, log_diff: float, log_same_thr: float, bmax: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per (n, b): the fewest a at which "different" has crossed (n - b + 1 when none can), and the
    most a at which "same" has (-1 when none)."""
    n = np.arange(budget + 1)[:, None] * np.ones((1, bmax + 1), dtype=int)
    b = np.arange(bmax + 1)[None, :] * np.ones((budget + 1, 1), dtype=int)
    top = np.maximum(n - b, -1)  # the largest a possible (-1: b > n, no such state)
    safe = np.maximum(n, 1)

    def diff_at(a: np.ndarray) -> np.ndarray:
        a = np.clip(a, 0, np.maximum(top, 0))
        return np.asarray(log_different(a, np.minimum(b, safe), safe, tau)) >= log_diff

    # increasing in a: the smallest crossing a in [0, top], top + 1 if none
    lo, hi = np.full(n.shape, -1), top + 1
    a_diff = _bisect_counts(lo, hi, lambda m: diff_at(m) & (m <= top))

    def same_at(a: np.ndarray) -> np.ndarray:
        a = np.clip(a, 0, np.maximum(top, 0))
        return np.asarray(log_same(a, np.minimum(b, safe), safe, delta)) < log_same_thr

    # decreasing in a: the smallest a that has NOT crossed, minus one
    lo, hi = np.full(n.shape, -1), top + 1
    a_same = _bisect_counts(lo, hi, lambda m: same_at(m) | (m > top)) - 1
    a_same[0, :] = -1  # no decision before the first prompt
    return a_diff, a_same


MAX_STATES = 70_000
"""The largest chain computed exactly, in (calls + 1) x (reference repeats + 1) states (memory: a
few arrays of that many x 65 floats). Past it no power is printed, and the verdict says why."""


@lru_cache(maxsize=1024)
def greedy_power(
    effect: float,
    p_y: float,
    *,
    budget: int,
    batch: int,
    tau: float,
    delta: float,
    alpha: float,
    threshold: float,
) -> Power | None:
    """Exact operating characteristics of the greedy rule at an effect (see the module): decided
    "different" when the e-process against theta <= tau reaches `threshold` (1/alpha per endpoint),
    "same" when the one against theta >= delta reaches 1/alpha, either read at the end of a round of
    `batch` prompts (the audit's looks), "different" first; no calls after a decision. None when
    the chain would exceed `MAX_STATES`."""
    px = 1 - (1 - effect) * (1 - p_y)
    p_plus, p_minus = px * (1 - p_y), (1 - px) * p_y
    p_zero = 1 - p_plus - p_minus
    if p_minus > 0:
        from scipy import stats

        need = int(stats.binom.isf(1e-12, budget, p_minus)) + 2
        bmax = min(budget, -(-need // 32) * 32)  # rounded up: the tables are cached by it
    else:
        bmax = 0
    if (budget + 1) * (bmax + 1) > MAX_STATES:
        return None
    a_diff, a_same = _tables(budget, tau, delta, math.log(threshold), math.log(1 / alpha), bmax)
    rows = int(min(a_diff.max(), budget)) + 1  # past a_diff every state has been absorbed
    live = np.zeros((rows + 1, bmax + 1))
    live[0, 0] = 1.0
    pend_same = np.zeros_like(live)
    pend_diff = different = same = calls = lost = 0.0
    a_idx = np.arange(rows + 1)[:, None]

    def step(p: np.ndarray) -> np.ndarray:
        nonlocal lost
        out = p * p_zero
        out[1:, :] += p[:-1, :] * p_plus
        out[:, 1:] += p[:, :-1] * p_minus
        lost += float(p[:, -1].sum() * p_minus + p[-1, :].sum() * p_plus)
        return out

    for t in range(1, budget + 1):
        live, pend_same = step(live), step(pend_same)
        cross_d = a_idx >= a_diff[t][None, :]
        cross_s = a_idx <= a_same[t][None, :]
        pend_diff += float(live[cross_d].sum() + pend_same[cross_d].sum())
        live[cross_d] = 0.0
        pend_same[cross_d] = 0.0
        pend_same += np.where(cross_s, live, 0.0)
        live[cross_s] = 0.0
        if t % batch == 0 or t == budget:
            s_mass = float(pend_same.sum())
            different += pend_diff
            same += s_mass
            calls += t * (pend_diff + s_mass)
            pend_diff = 0.0
            pend_same[:] = 0.0
    calls += budget * float(live.sum())
    return Power(effect, different, same, calls, lost)
