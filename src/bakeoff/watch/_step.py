"""What one check does to one endpoint's detector, given its answers — pure (no store, no calls):
the count of anchors whose greedy answer left its baseline answer, the e-detector's step, and, at
a crossing, the re-check's count (the anchors that changed asked again; `ask_again` makes those
calls). `bakeoff watch` (`_check`) and the replay of recorded answers (`replay`, the bench) both
step through `step_endpoint`, so the bench measures the detector a check uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bakeoff.watch._detector import DetectorState, Step, update

Answers = Mapping[str, str]
"""{item id: greedy answer} of an endpoint's successful calls."""


@dataclass
class Count:
    """One endpoint's count at a check: anchors compared with their baseline, those that changed."""

    n: int = 0
    changed: dict[str, str] = field(default_factory=dict)
    """{item id: this check's answer} of the anchors that changed."""
    why: str | None = None
    """A gap's cause."""


def count(
    anchors: Sequence[str],
    min_answered: float,
    state: DetectorState,
    got: tuple[Answers, Counter[str]],
    base: Answers,
    failed: str | None,
) -> tuple[Count, list[str]]:
    """The endpoint's count, and the anchors whose answers are new to its baseline (kept while
    the baseline forms). Fewer than `min_answered` of the anchors answered: a gap."""
    ok, errors = got
    done = [i for i in anchors if i in ok]
    if len(done) < min_answered * len(anchors):
        cause = failed or (errors.most_common(1)[0][0] if errors else "no answer")
        return Count(why=f"{len(done)}/{len(anchors)} anchors answered ({cause})"), []
    compared = [i for i in done if i in base]
    changed = {i: ok[i] for i in compared if ok[i] != base[i]}
    if state.phase != "baseline":
        return Count(len(compared), changed), []
    fresh = [i for i in done if i not in base]
    return Count(len(compared) if state.baseline_seen else len(fresh), changed), fresh


@dataclass(frozen=True)
class Held:
    """A re-check's count: of the anchors asked again, those answered and those changed again."""

    asked: int
    answered: int
    held: int


def held(changed: Mapping[str, str], again: Answers) -> Held:
    """`changed`: {item id: baseline answer} of the anchors that changed; `again`: their answers
    when asked again. An anchor holds if its answer differs from the baseline's again; one not
    answered does not."""
    answered = [i for i in changed if i in again]
    return Held(len(changed), len(answered), sum(again[i] != changed[i] for i in answered))


AskAgain = Callable[[dict[str, str]], tuple[Answers, object]]
"""Asks the anchors that changed ({item id: baseline answer}) again: their answers, and what the
caller keeps of the re-check (its run's id, for `bakeoff watch`)."""


@dataclass(frozen=True)
class Stepped:
    count: Count
    fresh: list[str]
    state: DetectorState
    step: Step
    recheck: Held | None = None
    raw: Step | None = None
    """At a re-check: the step the check's own count gave."""
    recheck_ref: object = None


def step_endpoint(
    anchors: Sequence[str],
    min_answered: float,
    before: DetectorState,
    got: tuple[Answers, Counter[str]],
    base: Answers,
    failed: str | None,
    ask_again: AskAgain | None,
) -> Stepped:
    """The endpoint's count and its detector's step; a crossing re-checked by `ask_again` (None:
    no re-check) and the detector stepped with the changes that held instead."""
    c, fresh = count(anchors, min_answered, before, got, base, failed)
    state, step = update(before, c.n, len(c.changed))
    if not (step.alarm and step.statistic is not None and ask_again is not None):
        return Stepped(c, fresh, state, step)
    changed = {i: base[i] for i in c.changed}
    again, ref = ask_again(changed)
    h = held(changed, again)
    state2, step2 = update(before, c.n, h.held)
    return Stepped(c, fresh, state2, step2, h, step, ref)
