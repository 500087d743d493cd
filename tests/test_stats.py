import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from bakeoff.stats import (
    bootstrap_mean_ci,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    pass_at_k,
    percentile,
    wilson_interval,
)


def test_wilson_known_values():
    # Newcombe (1998), Table I: 81/263 → 0.2553–0.3662
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_contains_the_estimate(k, n):
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_coverage_is_near_nominal():
    rng = random.Random(0)
    p, n, trials = 0.1, 40, 4000
    cover = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(k, n)
        cover += lo <= p <= hi
    assert 0.92 <= cover / trials <= 0.98


def test_wilson_rejects_nonsense():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_percentile_matches_numpy():
    import numpy as np

    xs = [random.Random(i).random() for i in range(101)]
    for q in (0, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert percentile([], 50) is None


# -- paired comparisons ----------------------------------------------------------------------------


def test_mcnemar_counts_discordant_pairs_only() -> None:
    ref = [True] * 10 + [False] * 10 + [True] * 8
    cand = [True] * 10 + [False] * 10 + [False] * 8
    p, b, c = mcnemar_exact(ref, cand)
    assert (b, c) == (8, 0)
    assert p == pytest.approx(2 * 0.5**8)  # exact two-sided binomial
    assert mcnemar_exact([True, False], [True, False])[0] == 1.0


def test_mcnemar_is_valid_under_the_null() -> None:
    """Both endpoints pass each item with the same probability: rejections at 0.05 stay ≤ 5%."""
    rng = np.random.default_rng(0)
    rejections = 0
    for _ in range(400):
        p_item = rng.uniform(0.1, 0.9, size=60)
        a, b = rng.random(60) < p_item, rng.random(60) < p_item
        rejections += mcnemar_exact(list(a), list(b))[0] < 0.05
    assert rejections / 400 <= 0.06


def test_paired_bootstrap_null_and_effect() -> None:
    rng = np.random.default_rng(1)
    ps = []
    for _ in range(200):
        base = rng.random(40)
        ps.append(
            paired_bootstrap(
                base + rng.normal(0, 0.1, 40), base + rng.normal(0, 0.1, 40), n_boot=1000
            )[1]
        )
    assert np.mean(np.array(ps) < 0.05) <= 0.08
    # uniform-ish p-values under the null
    assert sps.kstest(ps, "uniform").pvalue > 0.001
    base = rng.random(40)
    delta, p, (lo, hi) = paired_bootstrap(base, base - 0.2 + rng.normal(0, 0.05, 40))
    assert p < 0.01 and lo < delta < hi < 0


def test_holm_matches_the_textbook_example() -> None:
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([None, 0.5]) == [None, 0.5]
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    assert holm([0.01, 0.5]) == pytest.approx([0.02, 0.5])


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(7,2)/C(10,2)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - math.comb(7, 2) / math.comb(10, 2))


def test_bootstrap_ci_covers_the_mean() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    for seed in range(200):
        x = rng.beta(2, 5, size=50)
        lo, hi = bootstrap_mean_ci(list(x), n_boot=1000, seed=seed)
        covered += lo <= 2 / 7 <= hi
    assert covered / 200 >= 0.9


def test_clopper_pearson_covers_every_rate_exactly():
    """Exact coverage (binomial sums, no simulation) on a grid of true rates: never below 95%;
    and the textbook values."""
    from scipy.stats import binom

    from bakeoff.stats import clopper_pearson

    assert clopper_pearson(0, 10)[1] == pytest.approx(0.3085, abs=1e-4)
    lo, hi = clopper_pearson(5, 10)
    assert (lo, hi) == (pytest.approx(0.1871, abs=1e-4), pytest.approx(0.8129, abs=1e-4))
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    for n in (10, 40):
        bounds = [clopper_pearson(k, n) for k in range(n + 1)]
        for p in np.linspace(0.001, 0.999, 199):
            cover = sum(binom.pmf(k, n, p) for k, (lo, hi) in enumerate(bounds) if lo <= p <= hi)
            assert cover >= 0.95 - 1e-9, (n, p, cover)
