"""The targeted re-check of a crossing, at the count level over real loopback servers (fake
providers behind the distortion proxy): a change that lasts is confirmed and alarmed; one that is
gone by the re-check (the proxy serves the other model for one check's calls only) is not; the
re-check is stored with its step and is an ordinary run of only the endpoint and the anchors that
changed. And the property the false-alarm promise rests on: the re-check's count never raises the
statistic above the check's own."""

from __future__ import annotations

import json
import random
from contextlib import closing

from bakeoff.store import Store
from bakeoff.watch import DetectorSettings, DetectorState, Watch, WatchSettings, make_check, update
from test_watch import _lineup, switching  # noqa: F401 — the fixture

SMALL = WatchSettings(anchors=8, rotating=2, detector=DetectorSettings(baseline_checks=3))
PER_CHECK = 8 + 2  # the switched endpoint's calls per check


def _checks(tmp_path, url: str, count: int):
    watch = Watch(str(tmp_path / "w.db"), _lineup(tmp_path, url), "w", SMALL)
    results = [make_check(watch, now=float(k)) for k in range(count)]
    return watch, [r.steps[1] for r in results]  # the switched endpoint's


def test_a_change_gone_by_the_re_check_raises_no_alarm(tmp_path, switching):  # noqa: F811
    """The endpoint serves the other model for the 4th check's calls only: the check's count
    crosses (8/8 changed), the re-check finds 0/8 changed again, so no alarm; later checks see no
    change. The step keeps the re-check: its run (this endpoint only, the 8 anchors) and counts."""
    served = switching(after=3 * PER_CHECK, for_calls=PER_CHECK)
    watch, steps = _checks(tmp_path, served.url, 6)
    fourth = steps[3]
    assert fourth.step.phase == "watching" and fourth.recheck is not None
    rc = fourth.recheck
    assert (rc.asked, rc.answered, rc.held, rc.confirmed) == (8, 8, 0, False)
    assert rc.raw_statistic >= 1000 and fourth.step.statistic < 1000
    assert not any(s.step.alarm for s in steps) and fourth.step.changed == 0
    assert [s.step.changed for s in steps[4:]] == [0, 0]
    with closing(Store(watch.db)) as store:
        stored = next(s for s in store.watch_steps("w") if s.seq == 4 and s.endpoint == "switched")
        assert json.loads(stored.recheck_json or "{}")["held"] == 0
        calls = store.calls(rc.run_id)
        checks = store.watch_checks("w")
    assert {c["endpoint"] for c in calls} == {"switched"} and len(calls) == 8
    assert rc.run_id not in {c.run_id for c in checks}  # a run of its own, not a check


def test_a_change_that_lasts_is_confirmed_by_the_re_check_and_alarmed(tmp_path, switching):  # noqa: F811
    served = switching(after=3 * PER_CHECK)
    _, steps = _checks(tmp_path, served.url, 4)
    fourth = steps[3]
    assert fourth.step.alarm and fourth.step.changed == 8
    assert fourth.recheck is not None
    assert (fourth.recheck.held, fourth.recheck.confirmed) == (8, True)
    assert fourth.step.statistic == fourth.recheck.raw_statistic  # the same count, confirmed


def test_without_the_re_check_the_transient_change_alarms(tmp_path, switching):  # noqa: F811
    """The attack on the first test: the same transient change with `recheck` off is alarmed."""
    served = switching(after=3 * PER_CHECK, for_calls=PER_CHECK)
    watch = Watch(
        str(tmp_path / "w.db"),
        _lineup(tmp_path, served.url),
        "w",
        SMALL.model_copy(update={"recheck": False}),
    )
    steps = [make_check(watch, now=float(k)).steps[1] for k in range(4)]
    assert steps[3].step.alarm and steps[3].recheck is None


def test_a_confirmed_count_never_raises_the_statistic():
    """Monotone in the count: from any state, k' <= k changes give a statistic <= k's (so every
    alarm after a re-check is one the detector without it raised too: its run length to a false
    alarm is no shorter). 2,000 random states and counts."""
    rng = random.Random(7)
    for _ in range(2000):
        state = DetectorState(
            p0=rng.uniform(0.01, 0.5),
            baseline_seen=4,
            sr=[rng.uniform(0, 500) for _ in range(5)],
        )
        n = rng.randint(1, 40)
        k = rng.randint(0, n)
        k2 = rng.randint(0, k)
        high, low = update(state, n, k)[1], update(state, n, k2)[1]
        assert low.statistic is not None and high.statistic is not None
        assert low.statistic <= high.statistic * (1 + 1e-12)
