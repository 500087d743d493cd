"""Recorded answers replayed under a simulated clock through the watch's own detector step
(`_step.step_endpoint`: the count, the e-detector, the re-check), for the bench
(`bench/watch_null.py`): what a watch would have seen, check after check, had the endpoint served
these answers.

A `Source` is what an endpoint serves: a pool of recordings (each {item id: greedy answer} of one
real run), one drawn at every check and another at every re-check (the re-check's calls are new
calls: a load-dependent engine may answer them otherwise). A `Scenario` is one simulated watch of
one endpoint: its anchors, the source before the switch, and optionally the source it switches to
from check `switch_at` on (every later check and re-check is drawn from it)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bakeoff.watch._detector import DetectorSettings, DetectorState, Step
from bakeoff.watch._step import Answers, Held, step_endpoint


@dataclass(frozen=True)
class Source:
    name: str
    recordings: Sequence[Mapping[str, str]]
    per_request: bool = False
    """Draw a recording for every request (a provider routing each request to one of several
    deployments), not one for the whole check."""

    def draw(self, items: Sequence[str], rng: random.Random) -> tuple[int, dict[str, str]]:
        """The answers to `items` (those recorded): the recording drawn (-1: one per request)."""
        if self.per_request:
            picks = [self.recordings[rng.randrange(len(self.recordings))] for _ in items]
            return -1, {i: r[i] for i, r in zip(items, picks, strict=True) if i in r}
        k = rng.randrange(len(self.recordings))
        return k, {i: self.recordings[k][i] for i in items if i in self.recordings[k]}


@dataclass(frozen=True)
class Scenario:
    anchors: Sequence[str]
    before: Source
    checks: int
    after: Source | None = None
    switch_at: int | None = None
    """The first check served by `after` (1-based)."""

    def source(self, check: int) -> Source:
        if self.after is not None and self.switch_at is not None and check >= self.switch_at:
            return self.after
        return self.before


@dataclass(frozen=True)
class ReplayStep:
    check: int
    source: str
    recording: int
    """The index of the recording drawn for this check in its source (-1: one per request)."""
    step: Step
    recheck: Held | None = None


def replay(
    sc: Scenario,
    detector: DetectorSettings,
    rng: random.Random,
    *,
    recheck: bool = True,
    min_answered: float = 0.5,
) -> list[ReplayStep]:
    """The steps of one simulated watch, check 1 to `sc.checks`, ending at its first alarm."""
    state = DetectorState(settings=detector)
    base: dict[str, str] = {}
    out: list[ReplayStep] = []
    for check in range(1, sc.checks + 1):
        src = sc.source(check)
        r, answered = src.draw(sc.anchors, rng)
        got = (answered, Counter[str]())

        def ask_again(changed: dict[str, str], src: Source = src) -> tuple[Answers, object]:
            return src.draw(list(changed), rng)[1], None

        ask = ask_again if recheck else None
        st = step_endpoint(sc.anchors, min_answered, state, got, base, None, ask)
        base.update({i: got[0][i] for i in st.fresh})
        state = st.state
        out.append(ReplayStep(check, src.name, r, st.step, st.recheck))
        if st.step.alarm:
            break
    return out
