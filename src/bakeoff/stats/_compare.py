"""Comparing an endpoint with the reference on the same items, and multiple-testing correction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bootstrap_mean_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (Efron & Tibshirani 1993, ch. 13). Fewer than two
    values, or values all equal, say nothing of the spread: then the interval is that of a score in
    [0, 1] (Wilson's at n values, or [0, 1] for none), never one of zero width."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (0.0, 1.0)
    if x.size == 1 or np.all(x == x[0]):
        from bakeoff.stats._items import _wilson_p

        m = float(x.mean())
        return _wilson_p(min(max(m, 0.0), 1.0), int(x.size), confidence)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - confidence) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def mcnemar_exact(ref: Sequence[bool], cand: Sequence[bool]) -> tuple[float, int, int]:
    """Exact McNemar test on paired pass/fail outcomes (McNemar 1947; exact binomial form).

    Returns (two-sided p-value, b, c) with b = reference passed and candidate failed, c = the
    opposite. Under the null of equal pass rates, b ~ Binomial(b + c, 1/2).
    """
    if len(ref) != len(cand):
        raise ValueError("paired outcomes must have the same length")
    b = sum(1 for r, c in zip(ref, cand, strict=True) if r and not c)
    c = sum(1 for r, c_ in zip(ref, cand, strict=True) if c_ and not r)
    n = b + c
    if n == 0:
        return 1.0, b, c
    from scipy import (
        stats as sps,
    )  # 0.5 s to import: only when a test runs, not for every CLI command

    p = float(sps.binomtest(b, n, 0.5, alternative="two-sided").pvalue)
    return min(1.0, p), b, c


def paired_bootstrap(
    ref: Sequence[float], cand: Sequence[float], n_boot: int = 4000, seed: int = 0
) -> tuple[float, float, tuple[float, float]]:
    """Paired bootstrap of the mean difference cand − ref (Efron & Tibshirani 1993, ch. 16).

    Returns (mean difference, two-sided p-value, 95% interval). The p-value is twice the smaller
    tail of the bootstrap distribution of the centred difference beyond the observed one.
    """
    d = np.asarray(cand, dtype=float) - np.asarray(ref, dtype=float)
    if d.size == 0:
        return 0.0, 1.0, (0.0, 0.0)
    obs = float(d.mean())
    if np.all(d == d[0]):
        # no spread to resample: the sign test of n equal differences (p = 2^(1-n), 1 at n = 1)
        p = 1.0 if obs == 0 else min(1.0, 2.0 ** (1 - d.size))
        from bakeoff.stats._items import sign_flip_test

        return obs, p, sign_flip_test(d)[2] or (-1.0, 1.0)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    centred = boots - obs
    p = (np.sum(np.abs(centred) >= abs(obs)) + 1) / (n_boot + 1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return obs, float(min(1.0, p)), (float(lo), float(hi))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (Holm 1979); None entries are skipped."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):  # type: ignore[arg-type,return-value]
        p = pvalues[i]
        assert p is not None
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 − C(n−c, k) / C(n, k)."""
    if k > n:
        raise ValueError("k must be at most n")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
