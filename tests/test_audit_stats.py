"""Property tests of the fidelity statistics: valid under the null, powerful under alternatives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bakeoff.audit import (
    bounded,
    calls_for_equivalence,
    e_bh,
    greedy_power,
    mmd_hamming_test,
    normalize_text,
    rate_upper_bound,
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
    assert greedy_power(0.72, 30, 20.0) >= 0.95  # the measured Q8_0 greedy disagreement rate
    assert greedy_power(0.05, 30, 20.0) < 0.01


def _decide_greedy(x, budget=70, alpha=0.05, extra_tests=0):
    """The audit's verdict on one candidate whose per-prompt confident-divergence indicators are
    x (the reference's repeat never diverging), through the rule the audit applies."""
    from bakeoff.audit._greedy import equivalence_path
    from bakeoff.audit._verdict import decide
    from bakeoff.lineups import AuditSettings

    settings = AuditSettings(budget=budget, alpha=alpha)
    g = {
        "n": len(x),
        "confident_differ": int(sum(x)),
        "wealth": symmetric_betting_test([float(v) for v in x], alpha).wealth,
        "same_at": next(
            (t for t, e in enumerate(equivalence_path(list(x), 0.05), 1) if e >= 1 / alpha), None
        ),
        "rate_upper_bound": 1.0,  # only printed in the "why" of an inconclusive verdict
        "calls_for_same": None,
        "margin": 1.0,
        "near_ties": 0,
        "sampler_flag": None,
    }
    tests = {"greedy": g}
    for i in range(extra_tests):  # tests that see nothing: wealth stays at 1
        tests[f"null{i}"] = {"n": len(x), "wealth": [1.0] * len(x)}
    return decide({"c": tests}, settings)["c"], g


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.35])
@pytest.mark.parametrize("extra", [0, 2])
def test_printed_power_is_the_rejection_rate_of_the_applied_rule(rate, extra):
    """Simulated audits through the verdict rule itself: the share that end "different" within the
    budget equals the power the verdict prints (exact when greedy is alone; a lower bound with other
    tests beside it, here tests that see nothing, so still equal), within Monte Carlo error."""
    rng = np.random.default_rng(int(rate * 100) + extra)
    reps, budget = 1000, 30
    hits = 0
    printed = None
    for _ in range(reps):
        x = (rng.random(budget) < rate).astype(int)
        v, g = _decide_greedy(x, budget=budget, extra_tests=extra)
        hits += v["verdict"] == "different"
        printed = greedy_power(rate, budget, 20.0 * (1 + extra))
    se = np.sqrt(printed * (1 - printed) / reps) + 1e-3
    assert abs(hits / reps - printed) <= 3.5 * se, (hits / reps, printed)
    _, g = _decide_greedy([0] * budget, budget=budget, extra_tests=extra)
    assert g["power_is_exact"] == (extra == 0)


def test_the_upper_bound_covers_the_true_rate_at_every_time():
    """Anytime validity: over whole paths of 300 prompts, the bound falls below the true rate at
    some time in at most alpha of them (the "same within delta" claim's guarantee)."""
    from bakeoff.audit._greedy import _log_mixture

    rng = np.random.default_rng(11)
    reps, n, alpha = 1000, 300, 0.05
    for p in (0.02, 0.05, 0.1):
        misses = 0
        for _ in range(reps):
            x = rng.random(n) < p
            # the bound below p at some t <=> the e-process against "rate >= p" crossed 1/alpha
            logs = _log_mixture(np.cumsum(x), np.arange(1, n + 1), p)
            misses += bool(np.max(logs) >= np.log(1 / alpha))
        assert misses / reps <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps), (p, misses)


def test_equivalence_needs_the_calls_it_says_and_the_bound_agrees():
    assert calls_for_equivalence(0.05, 0.05) == 68
    assert calls_for_equivalence(0.1, 0.05) == 33
    assert rate_upper_bound([0] * 67, 0.05) > 0.05 > rate_upper_bound([0] * 68, 0.05)
    one = calls_for_equivalence(0.05, 0.05, k=1)
    x = [1] + [0] * (one - 1)
    assert rate_upper_bound(x, 0.05) < 0.05 < rate_upper_bound(x[:-1], 0.05)
    # a bound only tightens (running intersection) and is 1 with no data
    assert rate_upper_bound([], 0.05) == 1.0
    b = [rate_upper_bound([0] * 20 + [1] * k, 0.05) for k in range(5)]
    assert b == sorted(b)


def test_e_bh_controls_the_false_discovery_rate():
    """8 candidates, 3 truly different (e-values large), 5 honest (e-values of a nonnegative
    martingale at a fixed time: mean 1); FDR <= alpha, and the different ones are found."""
    assert e_bh({"a": 200.0, "b": 1.0}, 0.05) == {"a"}
    assert e_bh({"a": 30.0, "b": 1.0}, 0.05) == set()  # 30 < 2 / 0.05: not alone
    assert e_bh({"a": 30.0, "b": 25.0}, 0.05) == {"a", "b"}  # 25 >= 2 / (2 * 0.05)
    rng = np.random.default_rng(5)
    fdp, found = [], []
    for _ in range(3000):
        e = {f"null{i}": float(np.prod(1 + 0.5 * rng.choice([-1, 1], 20))) for i in range(5)}
        e.update(
            {
                f"alt{i}": float(np.prod(1 + 0.5 * (rng.random(20) < 0.9) * 2 - 0.5))
                for i in range(3)
            }
        )
        rej = e_bh(e, 0.05)
        fdp.append(sum(k.startswith("null") for k in rej) / max(len(rej), 1))
        found.append(sum(k.startswith("alt") for k in rej) / 3)
    assert np.mean(fdp) <= 0.05 and np.mean(found) > 0.5


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


def test_audit_prompts_are_distinct_and_a_longer_audit_extends_a_shorter_one():
    """Calibration draws independent audits from disjoint slices of one sequence: it needs many
    distinct prompts, and a stored audit's prompts must stay its prompts (rerun) when the sequence
    grows."""
    from bakeoff.suites.fidelity import audit_items

    long = [it.messages[0]["content"] for it in audit_items("greedy", seed=0, n=1600)]
    assert len(set(long)) == 1600
    for n in (10, 70, 400, 700):
        short = [it.messages[0]["content"] for it in audit_items("greedy", seed=0, n=n)]
        assert short == long[:n]
    other = [it.messages[0]["content"] for it in audit_items("greedy", seed=1, n=70)]
    assert other != long[:70]
