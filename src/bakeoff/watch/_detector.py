"""The watch's change detector: an e-detector (Shin, Ramdas & Rinaldo 2023, e-SR) over the greedy
change counts of each check, against the endpoint's own baseline — no reference needed.

Per check, the statistic is a count: of the `n` anchor prompts answered (prompts repeated at every
check, each with its own baseline answer), `k` came back with a greedy answer other than their
baseline's. An honest engine changes some (near-ties; batch composition), so the first
`baseline_checks` checks estimate that rate: the first gives each prompt its answer, the others
count how often it changes, and `p0` is the one-sided Clopper–Pearson upper bound of that rate at
`confidence` (never below `floor`).

Each later check gives, for every alternative rate `p1` on a fixed grid above `p0`, the likelihood
ratio `e = (p1/p0)^k ((1-p1)/(1-p0))^(n-k)`. It is an e-value under any change-free engine whose
mean change rate is at most `p0`: the ratio rises with `k`, and a sum of independent Bernoullis
with mean rate `p <= p0` (prompts may differ in how often they change) has
`E[exp(t k)] <= (1 - p0 + p0 e^t)^n` for `t >= 0` (Hoeffding 1956). Each alternative keeps a
Shiryaev–Roberts statistic `R_t = e_t (R_{t-1} + 1)`; their mean `M_t` is again an e-detector
(`M_t - t` is a supermartingale before a change), and the alarm is `M_t >= arl`. So, whenever `p0`
covers the honest rate (probability `>= confidence` over the baseline):

- the average run length to a false alarm is at least `arl` monitored checks, and
- the chance of a false alarm within the first `H` monitored checks is at most `H / arl`
  (optional stopping at `min(tau, H)`).

A failed check (outage, 5xx, timeout) is a gap: it changes nothing but the gap count. The state is a
small pydantic model, stored as JSON after every check.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from bakeoff.stats import clopper_pearson

GRID = (0.05, 0.15, 0.35, 0.6, 0.85)
"""Alternatives bet on, as fractions of the way from `p0` to 1 (p0 = 0.05: 0.10 … 0.86)."""
_CAP = 1e300  # the statistics stop growing here (an alarm is raised long before)

Phase = Literal["baseline", "watching", "alarm"]


class DetectorSettings(BaseModel):
    """What the detector promises and how its baseline is formed."""

    arl: float = Field(default=1000.0, gt=1)
    """The alarm threshold: the average run length to a false alarm, in checks, is at least this."""
    baseline_checks: int = Field(default=4, ge=2, le=1000)
    """Checks that form the baseline: the first gives each anchor its answer, the rest the rate."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Confidence of `p0`, the upper bound of the honest change rate."""
    floor: float = Field(default=0.01, gt=0, lt=0.5)
    """`p0` is never below this (an engine seen never to change may still, rarely)."""


class Step(BaseModel):
    """What one check did to the detector."""

    phase: Phase
    n: int
    changed: int
    statistic: float | None = None
    """`M_t` after this check (None while the baseline forms and for a gap)."""
    threshold: float
    alarm: bool = False
    gap: bool = False


class DetectorState(BaseModel):
    """One endpoint's detector (stored as JSON after every check)."""

    version: Literal[1] = 1
    settings: DetectorSettings = Field(default_factory=DetectorSettings)
    baseline_seen: int = 0
    """Baseline checks counted (gaps not)."""
    baseline_trials: int = 0
    baseline_changes: int = 0
    p0: float | None = None
    """The honest change rate's upper bound; set when the baseline is complete."""
    sr: list[float] = Field(default_factory=list)
    """One Shiryaev–Roberts statistic per alternative of `GRID`."""
    checks: int = 0
    """Monitored checks (after the baseline, gaps not counted)."""
    gaps: int = 0
    alarm_at: int | None = None
    """The monitored check that raised the alarm."""

    @property
    def phase(self) -> Phase:
        if self.alarm_at is not None:
            return "alarm"
        return "baseline" if self.p0 is None else "watching"

    @property
    def statistic(self) -> float | None:
        return sum(self.sr) / len(self.sr) if self.sr else None

    def alternatives(self) -> list[float]:
        assert self.p0 is not None
        return [self.p0 + (1 - self.p0) * g for g in GRID]


def honest_rate_bound(changes: int, trials: int, settings: DetectorSettings) -> float:
    """`p0`: the one-sided upper bound at `settings.confidence` of the change rate, floored."""
    if trials == 0:
        return 1.0
    upper = clopper_pearson(changes, trials, 2 * settings.confidence - 1)[1]
    return max(upper, settings.floor)


def log_e_value(p0: float, p1: float, n: int, k: int) -> float:
    """log of the likelihood ratio of k changes in n at rate p1 against p0."""
    return k * math.log(p1 / p0) + (n - k) * math.log1p(-p1) - (n - k) * math.log1p(-p0)


def update(state: DetectorState, n: int, changed: int) -> tuple[DetectorState, Step]:
    """The detector after a check with `changed` of `n` anchors answered otherwise than their
    baseline. `n == 0` is a gap. During the baseline (`baseline_seen < baseline_checks`), the counts
    go to the rate's estimate (the first baseline check sets the answers: its counts are ignored);
    after an alarm the state no longer moves (the baseline is re-formed by a new state)."""
    if not 0 <= changed <= n:
        raise ValueError(f"changed ({changed}) must be within 0..n ({n})")
    s = state.model_copy()  # shallow: `sr` is replaced, never changed in place
    threshold = s.settings.arl
    if s.alarm_at is not None:
        return s, Step(phase="alarm", n=n, changed=changed, threshold=threshold, alarm=True)
    if n == 0:
        s.gaps += 1
        return s, Step(phase=s.phase, n=0, changed=0, threshold=threshold, gap=True)
    if s.p0 is None:
        if s.baseline_seen > 0:
            s.baseline_trials += n
            s.baseline_changes += changed
        s.baseline_seen += 1
        if s.baseline_seen >= s.settings.baseline_checks:
            s.p0 = honest_rate_bound(s.baseline_changes, s.baseline_trials, s.settings)
            s.sr = [0.0] * len(GRID)
        return s, Step(phase="baseline", n=n, changed=changed, threshold=threshold)
    if s.p0 >= 1.0:  # a baseline that changed all the time: nothing can be detected against it
        s.checks += 1
        return s, Step(phase="watching", n=n, changed=changed, threshold=threshold)
    s.sr = [
        min(math.exp(min(log_e_value(s.p0, p1, n, changed), 690.0)) * (r + 1), _CAP)
        for p1, r in zip(s.alternatives(), s.sr, strict=True)
    ]
    s.checks += 1
    stat = s.statistic
    assert stat is not None
    alarm = stat >= threshold
    if alarm:
        s.alarm_at = s.checks
    step = Step(
        phase=s.phase, n=n, changed=changed, statistic=stat, threshold=threshold, alarm=alarm
    )
    return s, step
