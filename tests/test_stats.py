import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bakeoff.stats import percentile, wilson_interval


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
