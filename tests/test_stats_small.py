"""Small samples: the item interval, the suites' paired test and the `stop_when` sequence, each
checked by seeded simulation with its Monte Carlo (MC) standard error stated.

A rate near 0.95 over R simulations has MC standard error √(0.95·0.05/R): 0.0049 at R = 2000,
0.0069 at R = 1000; a rate near 0.05 the same. Coverage is asserted ≥ 0.95 − 3·SE and a level
≤ 0.05 + 3·SE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bakeoff.stats import (
    BettingCS,
    betting_confidence_sequence,
    bootstrap_t_interval,
    bootstrap_t_pvalue,
    item_bootstrap_ci,
    paired_mean_test,
    sign_flip_test,
)
from bakeoff.stats._items import _wilson_p


def _se(rate: float, reps: int) -> float:
    return math.sqrt(rate * (1 - rate) / reps)


def _skewed(kind: str, rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, float]:
    """Per-item scores in [0, 1] and their true mean: a skewed continuous score (Beta(0.5, 3),
    skewness 1.6) or pass/fail repeats (3 per item) with item pass rates from Beta(0.3, 1.2)."""
    if kind == "beta":
        return rng.beta(0.5, 3, (reps, n)), 0.5 / 3.5
    return rng.binomial(3, rng.beta(0.3, 1.2, (reps, n))) / 3, 0.2


@pytest.mark.parametrize("kind", ["beta", "repeats"])
def test_the_item_interval_covers_at_small_n_with_skewed_scores(kind):
    """The bootstrap-t over items covers ≥ 0.95 − 3·SE at n = 8, 15, 30 (2,000 simulations
    each, SE 0.0049) and 100 (1,000, SE 0.0069), samples with no spread falling back to Wilson
    as `item_bootstrap_ci` does. Measured: Beta 0.951 / 0.959 / 0.959 / 0.954 (mean width 0.41 /
    0.23 / 0.14 / 0.07), repeats 0.997 / 0.988 / 0.971 / 0.963 (conservative where resamples of
    few distinct values have no spread). Before, BCa (`scipy.stats.bootstrap`, 2,000 resamples)
    covered the Beta scores 0.878 at n = 8 and 0.907 at n = 15 (2,000 simulations each)."""
    rng = np.random.default_rng(11)
    for n, reps in ((8, 2000), (15, 2000), (30, 2000), (100, 1000)):
        x, mu = _skewed(kind, rng, reps, n)
        lo, hi = bootstrap_t_interval(x, n_boot=999, seed=n)
        flat = np.all(x == x[:, :1], axis=1)
        for i in np.flatnonzero(flat):  # no spread: Wilson at n, as item_bootstrap_ci does
            lo[i], hi[i] = _wilson_p(float(x[i, 0]), n, 0.95)
        coverage = float(np.mean((lo <= mu) & (mu <= hi)))
        assert coverage >= 0.95 - 3 * _se(0.95, reps), (kind, n, coverage)


def test_pass_fail_items_keep_wilson_at_the_effective_size():
    """Pass/fail suites with repeats are not bootstrapped: Wilson at Kish's effective size
    (`item_mean_ci`) covers ≥ 0.95 − 3·SE at 8 and 15 items with skewed pass rates (Beta(0.3,
    1.2), 3 independent repeats; 2,000 simulations each, SE 0.0049). Measured: 0.972 and 0.941.
    (By hand, not asserted: one repeat at item rates Beta(0.5, 4.5) and 100 items gave 0.922,
    Wilson's own dip near p = 0.1.)"""
    from bakeoff.stats import item_mean_ci

    rng = np.random.default_rng(21)
    for n in (8, 15):
        hits = 0
        for _ in range(2000):
            x = rng.random((n, 3)) < rng.beta(0.3, 1.2, n)[:, None]
            _, (lo, hi), _ = item_mean_ci({f"i{i}": [float(v) for v in x[i]] for i in range(n)})
            hits += lo <= 0.2 <= hi
        assert hits / 2000 >= 0.95 - 3 * _se(0.95, 2000), (n, hits)


def test_bca_undercovers_at_eight_skewed_items():
    """What the bootstrap-t replaced: BCa over 8 Beta(0.5, 3) items covers < 0.92 (measured
    0.878 over 2,000 simulations; here 300, SE 0.019: 0.857)."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(12)
    x, mu = _skewed("beta", rng, 300, 8)
    hits = 0
    for i, row in enumerate(x):
        res = bootstrap((row,), np.mean, n_resamples=1000, method="BCa", random_state=i)
        hits += res.confidence_interval.low <= mu <= res.confidence_interval.high
    assert hits / 300 < 0.92, hits


def test_item_bootstrap_ci_is_the_bootstrap_t():
    means = [0.0, 0.1, 0.05, 0.9, 0.2, 0.0, 0.3, 0.02]
    by_item = {f"i{i}": [m] for i, m in enumerate(means)}
    mean, (lo, hi), n = item_bootstrap_ci(by_item)
    blo, bhi = bootstrap_t_interval(means)
    assert n == 8 and mean == pytest.approx(np.mean(means))
    assert (lo, hi) == (float(blo), float(bhi)) and 0 <= lo < mean < hi <= 1


def _centred_exponential(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.exponential(1.0, n) / 8 - 1 / 8  # mean 0, skewness 2, in [−1/8, ∞)


def test_the_paired_test_keeps_its_level_for_skewed_differences():
    """12 items, differences of mean zero: centred exponential (skewness 2), centred Beta(0.5, 3)
    and Beta(0.5, 3) minus U(0, 2/7) scores; 2,000 simulations each (SE 0.0049 at 0.05). The
    sign-flip test alone rejects 0.093 / 0.093 / 0.077 of the time (symmetry is what it tests);
    the paired test (sign-flip and bootstrap-t both) ≤ 0.05 + 3·SE: measured 0.048 / 0.038 /
    0.056."""
    rng = np.random.default_rng(13)
    draws = {
        "exponential": lambda: _centred_exponential(rng, 12),
        "beta": lambda: rng.beta(0.5, 3, 12) - 0.5 / 3.5,
        "beta - uniform": lambda: rng.beta(0.5, 3, 12) - rng.uniform(0, 1 / 3.5, 12),
    }
    limit = 0.05 + 3 * _se(0.05, 2000)
    for name, draw in draws.items():
        d = [draw() for _ in range(2000)]
        p_new = np.array([paired_mean_test(x, seed=i)[1] for i, x in enumerate(d)])
        assert np.mean(p_new <= 0.05) <= limit, (name, np.mean(p_new <= 0.05))
        if name == "exponential":  # the old test fails it
            p_old = np.array([sign_flip_test(x)[1] for x in d])
            assert np.mean(p_old <= 0.05) > 0.08, np.mean(p_old <= 0.05)


def test_the_paired_test_is_valid_under_symmetry_and_has_power():
    """Symmetric differences (normal, 8 and 12 items; 1,000 simulations, SE 0.0069): rejection
    ≤ 0.05 + 3·SE and P(p ≤ u) ≤ u + 3·SE at every u (p-values not below uniform); a shift of
    1.2 standard deviations over 12 items is found > 0.85 of the time. Measured: rejection at
    0.05 is 0.035 (8 items) and 0.033 (12; the sign flips' granularity and the bootstrap-t both
    make it conservative), power 0.895."""
    rng = np.random.default_rng(14)
    for n in (8, 12):
        p = np.array([paired_mean_test(rng.normal(0, 0.2, n), seed=i)[1] for i in range(1000)])
        for u in (0.01, 0.05, 0.1, 0.25, 0.5):
            assert np.mean(p <= u) <= u + 3 * _se(u, 1000), (n, u, np.mean(p <= u))
    power = np.mean([paired_mean_test(rng.normal(0.24, 0.2, 12), seed=i)[1] < 0.05
                     for i in range(200)])  # fmt: skip
    assert power > 0.85, power


def test_studentizing_the_sign_flip_changes_nothing():
    """Chung & Romano's studentized permutation statistic, t = mean / (sd/√n), under every sign
    flip orders the flips as |Σd| does (Σd² is fixed by the flips), so its sign-flip p-value is
    the plain one: checked on 50 skewed samples by enumerating all 2^10 flips."""
    import itertools

    rng = np.random.default_rng(15)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=10)))
    for _ in range(50):
        d = _centred_exponential(rng, 10)
        flipped = signs * d
        t = np.abs(flipped.mean(1) / (flipped.std(1, ddof=1) / math.sqrt(10)))
        p_t = np.mean(t >= t[0] * (1 - 1e-9))  # row 0: all signs +, the observed sample
        assert p_t == pytest.approx(sign_flip_test(d)[1])


def test_small_sample_edge_cases():
    # one difference, or identical ones: the sign-flip's p (1, then 2^(1−n)); the interval wide
    assert paired_mean_test([0.3])[1] == 1.0
    assert paired_mean_test([0.5] * 3)[1] == pytest.approx(0.25)
    # five positive differences of five: 2/32 is the smallest p the sign flips allow
    assert paired_mean_test([0.1, 0.2, 0.3, 0.4, 0.5])[1] >= 2 / 32
    assert bootstrap_t_pvalue([0.0, 0.0, 0.0]) == 1.0
    _, _, ci = paired_mean_test([0.1, 0.2, 0.3, 0.4, 0.5])
    assert ci is not None and -1 <= ci[0] < 0.3 < ci[1] <= 1
    with pytest.raises(ValueError):
        bootstrap_t_interval([0.5])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_is_refused(bad):
    for call in (
        lambda: bootstrap_t_interval([0.1, bad, 0.3]),
        lambda: bootstrap_t_pvalue([0.1, bad, 0.3]),
        lambda: paired_mean_test([0.1, bad, 0.3]),
        lambda: betting_confidence_sequence([0.1, bad]),
        lambda: BettingCS().update(bad),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        betting_confidence_sequence([0.5, 1.5])  # a bounded mean: scores in [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=40))
def test_the_item_interval_holds_the_mean_within_bounds(xs):
    x = np.asarray(xs)
    lo, hi = bootstrap_t_interval(x, n_boot=200)
    assert 0 <= lo <= x.mean() + 1e-12 and x.mean() - 1e-12 <= hi <= 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=1, max_size=30))
def test_the_paired_p_value_is_never_below_the_sign_flips(ds):
    obs, p, _ = paired_mean_test(ds)
    assert 0 < p <= 1 and p >= sign_flip_test(ds)[1] and obs == pytest.approx(np.mean(ds))


def _paths_cover(p: float, draw, half_width: float | None, reps: int, steps: int) -> float:
    """The fraction of `reps` paths of `steps` scores whose sequence never excluded p."""
    cs = BettingCS(grid=[p], paths=(reps,), half_width=half_width)
    for _ in range(steps):
        cs.update(draw(reps))
    return float(np.mean(~cs.rejected[:, 0]))


def test_the_betting_sequence_covers_over_the_whole_path():
    """Anytime coverage: the true mean never left the sequence over 2,000 items, in 2,000 paths
    per case (SE 0.0049): ≥ 0.95 − 3·SE. Pass/fail at p = 0.5, 0.05, and Beta(0.5, 3) scores;
    bets sized for `stop_when`'s half-width 0.05 / WSR's own plug-in: measured 0.955 / 0.968,
    0.954 / 0.979, 0.955 / 0.976. (The old normal-mixture boundary, with α/2 where its two-sided
    form wants α, covered 0.986 at p = 0.5.)"""
    rng = np.random.default_rng(16)
    cases = {
        0.5: lambda r: (rng.random(r) < 0.5).astype(float),
        0.05: lambda r: (rng.random(r) < 0.05).astype(float),
        0.5 / 3.5: lambda r: rng.beta(0.5, 3, r),
    }
    for p, draw in cases.items():
        for half_width in (0.05, None):
            coverage = _paths_cover(p, draw, half_width, 2000, 2000)
            assert coverage >= 0.95 - 3 * _se(0.95, 2000), (p, half_width, coverage)


def test_the_betting_sequence_stops_sooner_than_the_normal_mixture():
    """Items until the interval is narrower than 0.1 (200 paths, full grid). Before (the
    normal-mixture boundary, its width a function of n alone, clipped to [0, 1]): 1,112 items at
    p = 0.5, 971 at p = 0.05 (200 paths). Measured with the betting sequence: 610 (5–95%:
    459–693) and 142 (85–200)."""
    rng = np.random.default_rng(17)
    for p, bound in ((0.5, 800), (0.05, 250)):
        cs = BettingCS(paths=(200,), half_width=0.05)
        stop = np.zeros(200, dtype=int)
        for t in range(1, 1200):
            cs.update((rng.random(200) < p).astype(float))
            lo, hi = cs.interval()
            stop[(stop == 0) & (hi - lo < 0.1)] = t
            if np.all(stop > 0):
                break
        assert np.all(stop > 0) and np.mean(stop) < bound, (p, np.mean(stop))


def test_the_sequence_function_is_the_stoppers_running_intersection():
    rng = np.random.default_rng(18)
    x = (rng.random(300) < 0.3).astype(float)
    lo, hi = betting_confidence_sequence(x)
    assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) <= 0)  # only ever narrows
    assert np.all(lo <= hi) and lo[-1] < 0.3 < hi[-1]
    cs = BettingCS()
    for v in x:
        cs.update(v)
    assert (float(lo[-1]), float(hi[-1])) == tuple(float(a) for a in cs.interval())


def test_the_summary_and_a_resume_replay_the_path_the_stopper_saw():
    """The betting sequence depends on the order items finished in: the summary's interval and a
    resumed Stopper's come from the calls sorted by `finished_at`, not by item id."""
    from bakeoff.lineups import parse_lineup
    from bakeoff.runs._stopping import Stopper, stored_values
    from bakeoff.runs._summary import Outcome, _sequence_stats, _suite_stats

    lineup = parse_lineup(
        "run: {suites: [s], stop_when: {ci_width: 0.2, min_items: 20}}\n"
        "endpoints:\n  - {name: a, provider: fake}\n"
    )
    rng = np.random.default_rng(19)
    values = (rng.random(60) < 0.3).astype(float)
    values[:15] = 1.0  # an unusual start: the interval depends on the order
    order = rng.permutation(60)  # item ids sort differently from the finishing order
    live = Stopper(lineup)
    for t, i in enumerate(order):
        live.record("s", f"i{i:02d}", float(values[t]))
    rows = [Outcome(item_id=f"i{i:02d}", repeat=0, value=float(values[t]), passed=None,
                    error=False, finished_at=1000.0 + t) for t, i in enumerate(order)]  # fmt: skip
    stats = _suite_stats(rows, {})
    _sequence_stats(stats, "s", sorted(rows, key=lambda o: o.item_id), lineup, 100)
    _, (lo, hi), _ = live.interval("s")
    assert stats.ci95 == [round(lo, 4), round(hi, 4)] and stats.stopped_early
    by_id = Stopper(
        lineup, [("s", o.item_id, o.value) for o in sorted(rows, key=lambda o: o.item_id)]
    )
    assert by_id.interval("s") != live.interval("s")  # the order matters here
    calls = [{"id": o.item_id, "endpoint": "a", "suite": "s", "item_id": o.item_id,
              "status": "ok", "finished_at": o.finished_at} for o in rows]  # fmt: skip
    scores = [{"call_id": o.item_id, "passed": None, "value": o.value} for o in rows]
    resumed = Stopper(lineup, stored_values(sorted(calls, key=lambda c: c["id"]), scores, "a"))
    assert resumed.interval("s") == live.interval("s")
