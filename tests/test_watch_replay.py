"""The replay of recorded answers (`bakeoff.watch.replay`, what `bench/watch_null.py` measures with)
steps the watch's own detector: it sees a switch of what the endpoint serves, re-checks a crossing
with answers drawn afresh, and the replay ignoring either would fail here. Count level, no servers."""

from __future__ import annotations

import random

from bakeoff.watch import DetectorSettings, Scenario, Source, replay

ANCHORS = [f"a{i}" for i in range(24)]
SAME = {i: f"answer {i}" for i in ANCHORS}
OTHER = {i: f"other {i}" for i in ANCHORS}
DET = DetectorSettings(baseline_checks=4)


def test_a_switch_is_alarmed_at_the_first_switched_check_and_not_before():
    sc = Scenario(ANCHORS, Source("f16", [SAME, dict(SAME)]), 20, Source("q4", [OTHER]), 7)
    steps = replay(sc, DET, random.Random(0))
    assert [s.source for s in steps] == ["f16"] * 6 + ["q4"]
    assert [s.step.phase for s in steps[:4]] == ["baseline"] * 4
    assert not any(s.step.alarm for s in steps[:6])
    assert steps[-1].step.alarm and steps[-1].check == 7
    assert steps[-1].step.changed == 24 and steps[-1].recheck is not None
    assert steps[-1].recheck.held == 24
    unswitched = Scenario(ANCHORS, Source("f16", [SAME]), 20)
    assert not any(s.step.alarm for s in replay(unswitched, DET, random.Random(0)))
    assert len(replay(unswitched, DET, random.Random(0))) == 20


def test_the_recheck_draws_again_and_removes_a_change_that_does_not_hold():
    """After the switch the endpoint serves either every anchor changed or the baseline's answers,
    drawn afresh per call batch: a crossing is confirmed only when the re-check's draw changed
    too. Without the re-check every first switched check alarms."""
    flaky = Source("flaky", [OTHER, SAME])
    sc = Scenario(ANCHORS, Source("f16", [SAME]), 12, flaky, 5)
    with_recheck = [replay(sc, DET, random.Random(s)) for s in range(200)]
    without = [replay(sc, DET, random.Random(s), recheck=False) for s in range(200)]
    crossings = [s for r in with_recheck for s in r if s.recheck is not None]
    assert crossings
    for s in crossings:  # the step counts the changes that held, and alarms only if they cross
        assert s.step.changed == s.recheck.held
        assert s.step.alarm == (s.recheck.held == 24)
    dropped = [s for s in crossings if s.recheck.held == 0]
    assert len(dropped) >= 60, len(dropped)  # about half the crossings (~200 expected)
    assert all(not s.step.alarm for s in dropped)
    first_without = [next((s.check for s in r if s.step.alarm), 99) for r in without]
    first_with = [next((s.check for s in r if s.step.alarm), 99) for r in with_recheck]
    assert all(a <= b for a, b in zip(first_without, first_with, strict=True))
    assert sum(a < b for a, b in zip(first_without, first_with, strict=True)) >= 60
