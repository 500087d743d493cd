"""An anytime-valid confidence sequence for the mean of [0, 1] scores, by betting.

Waudby-Smith, I. & Ramdas, A. (2024), "Estimating means of bounded random variables by betting",
JRSSB 86(1), Theorem 3 with the predictable plug-in bets of their eq. (26) ("hedged capital
process"). For each candidate mean m, two gamblers bet that the mean is above / below m; their
capital K_t(m) = ½ ∏(1 + λ⁺ᵢ(Xᵢ − m)) + ½ ∏(1 − λ⁻ᵢ(Xᵢ − m)) is a nonnegative martingale when m
is the true mean, so by Ville's inequality P(∃t: K_t(μ) ≥ 1/α) ≤ α: the means whose capital has
never reached 1/α form a confidence sequence that holds at every t at once (the running
intersection of the sets, an interval). The bets shrink with the running variance estimate, so
the interval adapts to the variance: a suite scoring near 0 or 1 narrows far sooner than one near
1/2, which no bound for 1/2-sub-Gaussian scores does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

GRID = 1001
"""Candidate means on [0, 1] (step 0.001); the interval is widened by one step each side."""
TRUNCATE = 0.5
"""c of WSR's λ ≤ c/m truncation: a bet never risks more than half the capital."""


class BettingCS:
    """The hedged capital process, updated one observation at a time (O(grid) each).

    Vectorised over independent paths: `update(x)` takes one value per path (shape `paths`).
    `grid` is the candidate means tracked (default 1001 points on [0, 1])."""

    def __init__(
        self,
        alpha: float = 0.05,
        grid: ArrayLike | None = None,
        paths: tuple[int, ...] = (),
        half_width: float | None = None,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.half_width = half_width
        self.m = np.linspace(0.0, 1.0, GRID) if grid is None else np.asarray(grid, dtype=float)
        self.t = 0
        self.total = np.zeros(paths)
        self.sq = np.zeros(paths)  # Σ (Xᵢ − μ̂ᵢ)², μ̂ᵢ including Xᵢ
        self.log_up = np.zeros((*paths, self.m.size))
        self.log_down = np.zeros((*paths, self.m.size))
        self.rejected = np.zeros((*paths, self.m.size), dtype=bool)  # capital ever ≥ 1/α
        self._cap_up = TRUNCATE / np.maximum(self.m, 1e-12)
        self._cap_down = TRUNCATE / np.maximum(1.0 - self.m, 1e-12)
        self._live = slice(0, self.m.size)  # candidates some path has not rejected yet
        self._step = float(np.max(np.diff(self.m))) if self.m.size > 1 else 0.0

    def update(self, x: ArrayLike) -> None:
        xs = np.asarray(x, dtype=float)
        if xs.shape != self.total.shape:
            raise ValueError(f"need one value per path, shape {self.total.shape}")
        if not np.all(np.isfinite(xs)) or np.any((xs < 0) | (xs > 1)):
            raise ValueError("scores must be finite and in [0, 1]")
        t = self.t + 1
        var = (0.25 + self.sq) / t  # σ̂²_{t−1}: predictable
        if self.half_width is None:
            lam = np.sqrt(2 * math.log(2 / self.alpha) / (var * t * math.log1p(t)))
        else:
            lam = self.half_width / var
        lam = lam[..., None]
        live = self._live  # a rejected candidate stays rejected: only the rest is updated
        d = xs[..., None] - self.m[live]
        up = self.log_up[..., live]
        down = self.log_down[..., live]
        up += np.log1p(np.minimum(lam, self._cap_up[live]) * d)
        down += np.log1p(-np.minimum(lam, self._cap_down[live]) * d)
        rejected = self.rejected[..., live]
        rejected |= np.logaddexp(up, down) - math.log(2) >= math.log(1 / self.alpha)
        kept = np.flatnonzero(~rejected.reshape(-1, rejected.shape[-1]).all(axis=0))
        start = live.start or 0
        if kept.size:
            self._live = slice(start + int(kept[0]), start + int(kept[-1]) + 1)
        else:
            self._live = slice(start, start)
        self.total += xs
        self.sq += (xs - (0.5 + self.total) / (t + 1)) ** 2
        self.t = t

    def interval(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(lo, hi) per path: the hull of the candidate means never rejected, widened by one grid
        step each side (where every candidate is rejected: the running mean ± one step)."""
        live = self._live
        start = live.start or 0
        keep = ~self.rejected[..., live]
        idx = np.arange(start, start + keep.shape[-1])
        first = np.where(keep, idx, self.m.size).min(axis=-1, initial=self.m.size)
        last = np.where(keep, idx, -1).max(axis=-1, initial=-1)
        none = last < 0
        mean = self.total / max(self.t, 1)
        lo = np.where(none, mean, self.m[np.minimum(first, self.m.size - 1)]) - self._step
        hi = np.where(none, mean, self.m[np.maximum(last, 0)]) + self._step
        return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def betting_confidence_sequence(
    values: ArrayLike, alpha: float = 0.05, half_width: float | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lo, hi) after each of `values` (scores in [0, 1], in the order they were observed): the
    running intersection of the hedged betting confidence sequence of Waudby-Smith & Ramdas
    (2024), valid at every n at once with probability ≥ 1 − α, so it may be read at a stop the
    data chose. `half_width`: bets sized to reach it (λ = half_width/σ̂²) rather than WSR's
    plug-in for every n. Non-finite or out-of-range values: ValueError."""
    x = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(x)) or np.any((x < 0) | (x > 1)):
        raise ValueError("scores must be finite and in [0, 1]")
    cs = BettingCS(alpha, half_width=half_width)
    lo, hi = np.empty(x.size), np.empty(x.size)
    for i, v in enumerate(x):
        cs.update(v)
        lo[i], hi[i] = (float(a) for a in cs.interval())
    return lo, hi
