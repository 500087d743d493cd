"""Bradley–Terry ratings from pairwise votes, with bootstrap intervals and an optional style control.

The model (Bradley & Terry 1952): P(a beats b) = σ(β_a − β_b [+ γ·x]), fitted by maximum likelihood
with a tiny ridge penalty (so that an endpoint that won every vote gets a large but finite rating).
Ties count as half a win each. Ratings are reported on the Elo-like scale of Chatbot Arena:
1000 + 400·β/ln 10, with one player anchored at 1000.

Style control (Chatbot Arena's "style control", Li et al. 2024): x is the normalised length difference
(len_a − len_b)/(len_a + len_b) of the two outputs; γ absorbs a voter's preference for longer answers,
and the β are then ratings *at equal length*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

SCALE = 400 / math.log(10)


@dataclass(frozen=True)
class Vote:
    a: str
    b: str
    y: float
    """1 if a won, 0 if b won, 0.5 for a tie."""
    x: float = 0.0
    """Style covariate: (len_a − len_b) / (len_a + len_b)."""


def _fit(
    ia: np.ndarray, ib: np.ndarray, y: np.ndarray, x: np.ndarray, n: int, anchor: int, style: bool
) -> np.ndarray:
    """Free parameters: the β of every player but the anchor, then γ if style."""
    free = [i for i in range(n) if i != anchor]
    k = len(free) + (1 if style else 0)
    ridge = 1e-3

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, float]:
        beta = np.zeros(n)
        beta[free] = theta[: len(free)]
        return beta, (theta[-1] if style else 0.0)

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, gamma = unpack(theta)
        z = beta[ia] - beta[ib] + gamma * x
        p = 1 / (1 + np.exp(-z))
        eps = 1e-12
        loss = -np.sum(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) + ridge * theta @ theta
        r = p - y  # d loss / d z
        g_beta = np.bincount(ia, r, n) - np.bincount(ib, r, n)
        grad = g_beta[free]
        if style:
            grad = np.append(grad, np.sum(r * x))
        return float(loss), grad + 2 * ridge * theta

    res = minimize(nll, np.zeros(k), jac=True, method="L-BFGS-B")
    return np.asarray(res.x)


def bradley_terry(
    votes: Sequence[Vote],
    players: Sequence[str] | None = None,
    *,
    anchor: str | None = None,
    style: bool = False,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, object]:
    """Ratings with 95% percentile-bootstrap intervals (resampling votes).

    Returns {"ratings": {player: {"rating", "ci95", "votes"}}, "style_coef": γ or None, "n": votes}.
    """
    names = list(players) if players else sorted({v.a for v in votes} | {v.b for v in votes})
    if not names:
        return {"ratings": {}, "style_coef": None, "n": 0}
    index = {p: i for i, p in enumerate(names)}
    votes = [v for v in votes if v.a in index and v.b in index and v.a != v.b]
    anc = index.get(anchor or "", 0)
    ia = np.array([index[v.a] for v in votes], dtype=int)
    ib = np.array([index[v.b] for v in votes], dtype=int)
    y = np.array([v.y for v in votes], dtype=float)
    x = np.array([v.x for v in votes], dtype=float)
    n = len(names)
    counts = np.bincount(ia, minlength=n) + np.bincount(ib, minlength=n)

    def ratings(theta: np.ndarray) -> np.ndarray:
        beta = np.zeros(n)
        beta[[i for i in range(n) if i != anc]] = theta[: n - 1]
        return 1000 + SCALE * beta

    if not votes:
        point = np.full(n, 1000.0)
        boots = np.empty((0, n))
        gamma = None
    else:
        theta = _fit(ia, ib, y, x, n, anc, style)
        point = ratings(theta)
        gamma = float(theta[-1]) if style else None
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(n_boot):
            s = rng.integers(0, len(votes), len(votes))
            rows.append(ratings(_fit(ia[s], ib[s], y[s], x[s], n, anc, style)))
        boots = np.array(rows)
    out: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(names):
        ci = (
            [round(float(np.quantile(boots[:, i], q)), 1) for q in (0.025, 0.975)]
            if len(boots)
            else [None, None]
        )
        out[p] = {"rating": round(float(point[i]), 1), "ci95": ci, "votes": int(counts[i])}
    return {
        "ratings": dict(sorted(out.items(), key=lambda kv: -kv[1]["rating"])),
        "style_coef": None if gamma is None else round(gamma, 4),
        "anchor": names[anc],
        "n": len(votes),
    }
