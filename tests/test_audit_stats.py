"""Property tests of the fidelity statistics: valid under the null, powerful under alternatives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bakeoff.audit import (
    betting_power,
    bounded,
    mmd_hamming_test,
    normalize_text,
    sign_flip_test,
    symmetric_betting_test,
)


def test_betting_false_positive_rate_is_at_most_alpha_under_symmetric_nulls():
    rng = np.random.default_rng(1)
    reps, n = 2000, 200
    for draw in (
        lambda: rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.05, 0.9, 0.05]),  # rare ties broken
        lambda: rng.uniform(-1, 1, size=n),
        lambda: np.tanh(rng.standard_t(2, size=n)),  # heavy tails
    ):
        rejections = sum(
            symmetric_betting_test(draw()).rejected_at is not None for _ in range(reps)
        )
        assert rejections / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)


def test_betting_anytime_p_values_are_conservative():
    rng = np.random.default_rng(2)
    ps = np.array([symmetric_betting_test(rng.uniform(-1, 1, 100)).p_value for _ in range(2000)])
    for a in (0.01, 0.05, 0.1, 0.2):
        assert (ps <= a).mean() <= a + 3 * np.sqrt(a * (1 - a) / len(ps))


def test_betting_power_against_a_clear_alternative():
    # every prompt's greedy output changed: decided within 10 observations
    res = symmetric_betting_test([1.0] * 30)
    assert res.rejected_at is not None and res.rejected_at <= 10
    assert res.p_value < 0.05
    assert betting_power(0.72, 30) >= 0.95  # the measured Q8_0 greedy disagreement rate
    assert betting_power(0.05, 30) < 0.2


def test_bounded_is_predictable_and_keeps_sign():
    d = [0.5, -2.0, 3.0, 0.0]
    b = bounded(d)
    assert all(-1 < x < 1 for x in b)
    assert [np.sign(x) for x in b] == [np.sign(x) for x in d]
    assert bounded(d[:2]) == b[:2]  # no look-ahead: a prefix maps the same way


def test_sign_flip_p_values_uniform_under_null():
    rng = np.random.default_rng(3)
    ps = np.array([sign_flip_test(rng.normal(size=20), n_perm=500, seed=i) for i in range(600)])
    for a in (0.05, 0.1, 0.5):
        assert abs((ps <= a).mean() - a) <= 3 * np.sqrt(a * (1 - a) / len(ps)) + 0.01
    assert sign_flip_test(rng.normal(1.0, 1.0, size=30)) < 0.01


def test_mmd_uniform_under_null_and_detects_a_style_change():
    rng = np.random.default_rng(4)
    words = ["the", "sea", "is", "calm", "blue", "and", "deep", "today"]

    def sample(k):
        return " ".join(rng.choice(words, size=k))

    ps = [
        mmd_hamming_test(
            [sample(8) for _ in range(15)], [sample(8) for _ in range(15)], n_perm=200, seed=i
        )[1]
        for i in range(200)
    ]
    assert np.mean(np.array(ps) <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)
    cand = ["ARR! " + sample(8) for _ in range(20)]
    ref = [sample(8) for _ in range(20)]
    assert mmd_hamming_test(cand, ref, n_perm=500)[1] < 0.01


def test_normalisation_ignores_whitespace_and_unicode_forms():
    assert normalize_text("  Hello\n\nworld ") == normalize_text("Hello world")
    assert normalize_text("ﬁne") == "fine"
    a = ["The answer is here."] * 10
    b = [" The answer  is here.\n"] * 10
    assert mmd_hamming_test(a, b, n_perm=200)[1] == 1.0  # a stripped space is not a difference


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-1, max_value=1), max_size=60))
def test_betting_wealth_stays_positive(d):
    res = symmetric_betting_test(d)
    assert all(w > 0 for w in res.wealth)
    assert 0 < res.p_value <= 1


@pytest.mark.parametrize("n", [0, 1])
def test_degenerate_inputs(n):
    assert symmetric_betting_test([0.0] * n).p_value == 1.0
    assert mmd_hamming_test(["a"] * n, ["b"] * n)[1] == 1.0
