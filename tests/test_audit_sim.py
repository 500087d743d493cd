"""The greedy verdict rule simulated at the level of counts: seeded audits of X (the candidate parts
confidently) and Y (the reference's own repeat does) per prompt, decided by the functions the audit
itself calls — `greedy_tests` on the prompts seen so far, `decide`, and the audit's stop rule
`_decided`, read after every round of `batch` prompts up to the budget, at the default settings.

A route of a share s of requests to a substitute that changes c of outputs is, per prompt, X = 1
with probability 1 - (1 - s c)(1 - p_y): changed by the substitute, or parted as the reference's
own repeat parts (p_y). c = 0.22 is Q8_0's measured rate on the local ladder (9/40 at margin 0.1,
docs/FIDELITY.md). Every rate below is a binomial proportion over the seeded audits; its Monte
Carlo error is sqrt(p (1 - p) / reps)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bakeoff.audit import greedy_power, greedy_tests
from bakeoff.audit._audit import _decided
from bakeoff.audit._verdict import decide, stop_threshold
from bakeoff.lineups import AuditSettings
from bakeoff.store import Verdict

DEFAULT = AuditSettings()
Q8_0_LIKE = 0.22
REPS = 200


def _verdict_at(x: list[int], y: list[int], settings: AuditSettings) -> Verdict:
    """The verdict `analyse` would give on these prompts (greedy regime, one candidate)."""
    g = greedy_tests(x, y, delta=settings.same_within, tau=settings.tolerance, alpha=settings.alpha)
    g.margin, g.near_ties, g.sampler_flag = settings.margin, 0, None
    v = decide({"c": {"greedy": g}}, settings)["c"]
    v.tests = {"greedy": g}
    return v


def _audit(x: list[int], y: list[int], settings: AuditSettings) -> tuple[str, int]:
    """One audit through the applied rule: (verdict, greedy calls). Both e-processes' crossings
    are absorbing and each round's analysis sees a prefix of the same paths, so the audit stops at
    the first round boundary after the first crossing; the rule is called there (and checked not
    to have stopped one round earlier) instead of at every round."""
    budget, batch = settings.budget, settings.batch
    threshold = stop_threshold(settings, 1)
    full = greedy_tests(
        x, y, delta=settings.same_within, tau=settings.tolerance, alpha=settings.alpha
    )
    crossings = [t for t in (full.rejected_at, full.same_at) if t is not None]
    stop = min(budget, batch * math.ceil(min(crossings) / batch)) if crossings else budget
    v = _verdict_at(x[:stop], y[:stop], settings)
    if crossings:
        assert _decided(v, threshold), v
    if stop > batch:
        earlier = _verdict_at(x[: stop - batch], y[: stop - batch], settings)
        assert not _decided(earlier, threshold), earlier
    return v.verdict, stop


def _simulate(
    effect: float, p_y: float, seed: int, settings: AuditSettings = DEFAULT, reps: int = REPS
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = settings.budget
    p_x = 1 - (1 - effect) * (1 - p_y)
    counts = {"different": 0, "same": 0, "inconclusive": 0}
    calls = 0
    for _ in range(reps):
        x = (rng.random(n) < p_x).astype(int).tolist()
        y = (rng.random(n) < p_y).astype(int).tolist()
        verdict, used = _audit(x, y, settings)
        counts[verdict] += 1
        calls += used
    return {k: v / reps for k, v in counts.items()} | {"calls": calls / reps}


def _chain(effect: float, p_y: float, settings: AuditSettings = DEFAULT):
    return greedy_power(
        effect,
        p_y,
        budget=settings.budget,
        batch=settings.batch,
        tau=settings.tolerance,
        delta=settings.same_within,
        alpha=settings.alpha,
        threshold=stop_threshold(settings, 1),
    )


def _close(simulated: float, exact: float, reps: int = REPS) -> bool:
    """Within 3.5 Monte Carlo standard errors (plus 1/reps for rates near 0 or 1)."""
    return abs(simulated - exact) <= 3.5 * math.sqrt(exact * (1 - exact) / reps) + 1 / reps


@pytest.mark.parametrize("share", [0.05, 0.10])
def test_routes_to_a_q8_0_like_substitute_are_rarely_same(share):
    """The issue's criterion: a 5% or 10% route to a substitute that changes 22% of outputs is
    "same" in at most 5% of audits; and the exact chain's figure matches the simulation."""
    effect = share * Q8_0_LIKE
    sim = _simulate(effect, 0.0, seed=int(share * 100))
    exact = _chain(effect, 0.0)
    assert sim["same"] <= 0.05, sim
    assert exact.same <= 0.05
    assert _close(sim["same"], exact.same) and _close(sim["different"], exact.different), (
        sim,
        exact,
    )


@pytest.mark.parametrize("share", [0.05, 0.10])
def test_routes_are_rarely_same_beside_a_reference_that_flips_itself(share):
    """The same with a reference whose own repeat parts confidently on 10% of prompts (a batching
    GPU engine): "same" now bounds the excess over that noise."""
    effect = share * Q8_0_LIKE
    sim = _simulate(effect, 0.10, seed=10 + int(share * 100))
    exact = _chain(effect, 0.10)
    assert exact.same <= 0.05 and sim["same"] <= 0.05 + 3.5 * math.sqrt(0.05 * 0.95 / REPS)
    assert _close(sim["same"], exact.same), (sim, exact)


def test_printed_power_at_10_percent_is_the_simulated_rejection_rate():
    """With a reference that flips 10% itself: the power the verdict prints at 10% of outputs
    changed (exact, the reference's rate plugged in) is the rate at which simulated audits end
    "different", within Monte Carlo error. The old rule printed 0.99 "exact" here (Y ignored)."""
    y = [1] * 40 + [0] * 360  # an audit whose reference repeat parted on 10% of prompts
    printed = _verdict_at([0] * 400, y, DEFAULT).tests["greedy"]
    at10 = next(p for p in printed.power or [] if p.effect == 0.10)
    assert printed.power_is_exact and "exact" in (printed.power_method or "")
    sim = _simulate(0.10, 0.10, seed=42)
    assert _close(sim["different"], at10.different), (sim, at10)
    assert abs(sim["calls"] - at10.expected_calls) <= 0.1 * at10.expected_calls, (sim, at10)
    assert 0.5 < at10.different < 0.95  # far from the old 0.99


@pytest.mark.parametrize("p_y", [0.0, 0.10])
def test_an_honest_engine_at_the_tolerance_is_different_at_most_alpha(p_y):
    """The composite null: an engine whose excess rate of confident divergences is exactly tau
    (the worst honest case) is "different" in at most alpha of audits."""
    effect = DEFAULT.tolerance / (1 - p_y)  # excess rate effect * (1 - p_y) = tau
    sim = _simulate(effect, p_y, seed=7 + int(p_y * 100))
    assert sim["different"] <= DEFAULT.alpha, sim
    assert _chain(effect, p_y).different <= DEFAULT.alpha


def test_power_at_5_and_25_percent_and_the_calls_they_take():
    """Deterministic reference (CPU llama.cpp): the chain's power and expected calls match the
    simulation at the other two printed effects."""
    for effect, seed in ((0.05, 5), (0.25, 25)):
        sim = _simulate(effect, 0.0, seed=seed)
        exact = _chain(effect, 0.0)
        assert _close(sim["different"], exact.different), (effect, sim, exact)
        assert abs(sim["calls"] - exact.expected_calls) <= 0.1 * exact.expected_calls


def test_the_old_defaults_fail_the_route_criterion():
    """The check has teeth: at the old defaults (delta 0.05, budget 70) a 5% route to a Q8_0-like
    substitute is "same" in about (1 - 0.011)^68 = 0.47 of audits."""
    old = DEFAULT.model_copy(update={"same_within": 0.05, "budget": 70, "tolerance": 0.0})
    sim = _simulate(0.05 * Q8_0_LIKE, 0.0, seed=3, settings=old)
    assert sim["same"] > 0.3, sim
