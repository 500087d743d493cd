"""The watch's change detector against simulated check counts, where the truth is known: the average
run length to a false alarm is at least what it promises, and a Q4_K_M-like shift is caught at once.

Rates used (the brief's, not measured here): a Q4_K_M substitute changes 60–90% of 48-token greedy
answers of this model, an honest engine 2–5% (near-ties). Every Monte Carlo figure is stated with its
standard error or a Clopper–Pearson bound."""

from __future__ import annotations

import math
import random

import pytest

from bakeoff.stats import clopper_pearson
from bakeoff.watch import DetectorSettings, DetectorState, honest_rate_bound, update

N = 24  # anchors per check


def _watching(p0: float, arl: float) -> DetectorState:
    """A detector whose baseline is done with the given `p0` (the boundary of its promise)."""
    return DetectorState(settings=DetectorSettings(arl=arl), baseline_seen=4, p0=p0, sr=[0.0] * 5)


def _count(rng: random.Random, rates: list[float]) -> int:
    """Changes in one check: each anchor changes with its own rate, independently."""
    return sum(rng.random() < q for q in rates)


def _run_length(state: DetectorState, rates: list[float], rng: random.Random, cap: int) -> int:
    """Monitored checks until the alarm (cap if none by then)."""
    for t in range(1, cap + 1):
        state, step = update(state, N, _count(rng, rates))
        if step.alarm:
            return t
    return cap


def _arl(p0: float, rates: list[float], arl: float, runs: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    lengths = [_run_length(_watching(p0, arl), rates, rng, cap=50 * int(arl)) for _ in range(runs)]
    mean = sum(lengths) / runs
    sd = math.sqrt(sum((x - mean) ** 2 for x in lengths) / (runs - 1))
    return mean, sd / math.sqrt(runs)


HOMOGENEOUS = [0.05] * N
HETEROGENEOUS = [0.25] * 4 + [0.0] * 20  # mean ≈ 4%: a few near-tie prompts, the rest stable
HETEROGENEOUS_AT_P0 = [0.3] * 4 + [0.0] * 20  # mean 0.05 exactly


@pytest.mark.parametrize("rates", [HOMOGENEOUS, HETEROGENEOUS_AT_P0], ids=["same", "near-ties"])
def test_run_length_to_a_false_alarm_is_at_least_the_promise_at_its_boundary(rates):
    """An honest engine whose change rate equals p0 (the worst case the promise covers): the mean
    run length to a false alarm, over 300 runs, is at least `arl` = 20 beyond 3 standard errors.
    (Measured: 146 ± 8 homogeneous, 456 ± 19 with per-prompt rates — their sum is less dispersed —
    against 4.75 ± 0.20 for the broken detector below.)"""
    mean, se = _arl(0.05, rates, arl=20, runs=300, seed=1)
    assert mean - 3 * se >= 20, (mean, se)


def test_the_check_fails_for_a_detector_that_underestimates_the_honest_rate():
    """The attack: an engine changing 12% while p0 says 5% breaks the promise (the reason p0 is an
    upper bound), and the simulation sees it — so the test above can fail."""
    mean, se = _arl(0.05, [0.12] * N, arl=20, runs=200, seed=2)
    assert mean + 3 * se < 20, (mean, se)


def _baseline(rng: random.Random, rates: list[float], settings: DetectorSettings):
    state = DetectorState(settings=settings)
    for _ in range(settings.baseline_checks):
        state, step = update(state, N, _count(rng, rates))
        assert step.phase == "baseline"
    return state


def test_false_alarms_within_h_checks_whole_procedure_with_its_baseline():
    """The whole procedure — the baseline estimating p0, then watching — on honest engines with
    near-tie prompts (mean rate 4%): a false alarm within H = 5 checks has probability at most
    H/arl + (1 - confidence) = 0.25 + 0.05; measured over 400 runs: 0 alarms (95% upper bound
    0.009)."""
    settings = DetectorSettings(arl=20)
    rng = random.Random(3)
    alarms = 0
    for _ in range(400):
        state = _baseline(rng, HETEROGENEOUS, settings)
        assert state.phase == "watching" and state.p0 is not None and state.p0 >= 0.01
        for _ in range(5):
            state, _ = update(state, N, _count(rng, HETEROGENEOUS))
        alarms += state.alarm_at is not None
    upper = clopper_pearson(alarms, 400)[1]
    assert upper <= 5 / 20 + 0.05, (alarms, upper)


def _delay(rng: random.Random, honest: float, changed: float, runs: int) -> list[int]:
    """Checks after the switch until the alarm, default settings (arl 1000)."""
    delays = []
    for _ in range(runs):
        state = _baseline(rng, [honest] * N, DetectorSettings())
        for t in range(1, 200):
            state, step = update(state, N, _count(rng, [changed] * N))
            if step.alarm:
                delays.append(t)
                break
        else:
            delays.append(200)
    return delays


def test_a_q4_k_m_like_shift_is_alarmed_within_two_checks_after_it():
    """Honest baseline at 2% or 5%, then 60% (the low end of Q4_K_M's greedy change rate) or 90%:
    every one of 100 runs each alarms within 2 checks of the switch, most at the first (measured:
    98/100 over a 2% baseline, 88/100 over 5% — a noisier baseline bounds p0 higher; all at 90%)."""
    rng = random.Random(4)
    for honest, changed, at_first in ((0.02, 0.6, 95), (0.05, 0.6, 80), (0.05, 0.9, 100)):
        delays = _delay(rng, honest, changed, runs=100)
        assert max(delays) <= 2 and delays.count(1) >= at_first, (honest, changed, delays)


def test_a_smaller_shift_takes_a_few_checks_and_the_delay_is_measured():
    """A Q8_0-like shift (22% of answers change; the audit's own figure for a Q8_0 substitute) over an
    honest 3%, default arl 1000: measured over 200 runs, mean delay 6.5 checks, median 5, 90% within
    12 (a long tail where the baseline drew p0 high); printed."""
    delays = sorted(_delay(random.Random(5), 0.03, 0.22, runs=200))
    mean = sum(delays) / len(delays)
    print(f"Q8_0-like delay: mean {mean:.2f}, median {delays[100]}, 90% {delays[180]} checks")
    assert mean <= 8 and delays[100] <= 5 and delays[180] <= 14, (mean, delays)


def test_gaps_change_nothing_but_the_gap_count_and_the_state_round_trips():
    state = DetectorState()
    for n, k in [(24, 0), (24, 1), (0, 0), (24, 0), (24, 2)]:
        state, step = update(state, n, k)
    assert state.gaps == 1 and state.baseline_seen == 4 and state.phase == "watching"
    assert state.p0 == honest_rate_bound(3, 72, state.settings)
    before = state.model_dump_json()
    state, step = update(state, 0, 0)
    assert (
        step.gap
        and step.statistic is None
        and state.sr == DetectorState.model_validate_json(before).sr
    )
    assert DetectorState.model_validate_json(state.model_dump_json()) == state
    with pytest.raises(ValueError, match=r"within 0\.\.n"):
        update(state, 3, 4)


def test_an_alarm_stays_until_a_new_baseline():
    state = _watching(0.05, 1000)
    state, step = update(state, N, 20)
    assert step.alarm and state.alarm_at == 1 and state.phase == "alarm"
    state, step = update(state, N, 0)
    assert step.alarm and state.checks == 1  # frozen: the alarm is not argued away by later checks
