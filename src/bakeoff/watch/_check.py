"""One check of a watch: an ordinary stored run of the watch's prompts through the pipeline
(`bakeoff.run()`'s steps), then each endpoint's greedy answers to the anchor prompts compared with
their baseline answers, and its detector stepped — the steps, the new baseline answers and the
check's end written in one transaction.

The prompts come from the watch's private pool: `anchors` drawn from its `pool_seed` (the same at
every check: the baseline's anchor), and `rotating` drawn from a seed of the pool seed and the
check's number (new at every check). Every call is greedy (T=0) with the audit's `max_tokens` (48),
like the audit's greedy regime (suite `fidelity.greedy`).

A check interrupted (SIGTERM, a kill) stays `running` with its run: the next invocation makes the
same check again, which resumes the same run (its lineup is the same, so the pipeline finds it;
its successful calls are not made twice) — no check is lost or doubled.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bakeoff._pipeline import preflight
from bakeoff.lineups import Lineup
from bakeoff.plugins import load, resolve_lineup
from bakeoff.runs import RegimeCost
from bakeoff.store import BaselineAnswer, Store, WatchStepRecord
from bakeoff.watch._cost import SKIPPED, CostCaps, CostStop, actual, check_runs, gate, rotating_seed
from bakeoff.watch._detector import DetectorSettings, DetectorState, Step
from bakeoff.watch._lease import LEASE_S, Heartbeat, gone, me
from bakeoff.watch._recheck import Recheck, ask_again, recheck_of
from bakeoff.watch._runs import GREEDY, Log, answers, run_lineup
from bakeoff.watch._step import step_endpoint


class WatchSettings(BaseModel):
    """A watch's settings, stored when it is made (later invocations keep them)."""

    version: Literal[1] = 1
    pool_seed: int = Field(default_factory=lambda: secrets.randbits(31))
    """The private pool's seed (drawn afresh for each watch; never sent anywhere)."""
    anchors: int = Field(default=24, ge=1, le=10_000)
    """Prompts asked at every check, each compared with its baseline answer."""
    rotating: int = Field(default=8, ge=0, le=10_000)
    """Prompts new at every check (stored with the check; not yet evidence for the detector)."""
    min_answered: float = Field(default=0.5, gt=0, le=1)
    """A check where an endpoint answered fewer than this share of the anchors is a gap."""
    recheck: bool = True
    """At a crossing, re-ask the anchors that changed and alarm only if the change holds."""
    detector: DetectorSettings = Field(default_factory=DetectorSettings)


def anchor_ids(settings: WatchSettings) -> list[str]:
    """The anchors' item ids (`fid-<seed>-<i>`, as the fidelity prompts are named)."""
    return [f"fid-{settings.pool_seed}-{i:04d}" for i in range(settings.anchors)]


def check_lineup(lineup: Lineup, settings: WatchSettings, seq: int) -> Lineup:
    """The lineup of check `seq`: the watched endpoints as the user's lineup defines them; the
    watch's prompts as its only suite, each item once, no cache, no audit, no probe."""
    data = lineup.model_dump(mode="json")
    data["reference"] = None
    data["datasets"] = []
    data["audit"]["enabled"] = False
    draws = [[settings.pool_seed, settings.anchors]]
    if settings.rotating:
        draws.append([rotating_seed(settings.pool_seed, seq), settings.rotating])
    data["run"].update(
        seed=rotating_seed(settings.pool_seed, seq),  # each check its own run (config hash)
        suites=[GREEDY],
        suite_options={GREEDY: {"draws": draws}},
        limit=None,
        repeats=1,
        cache=False,
        stop_when=None,
        probe=False,
    )
    return Lineup.model_validate(data)


@dataclass(frozen=True)
class EndpointStep:
    endpoint: str
    step: Step
    state: DetectorState
    why: str | None = None
    """A gap's cause (the endpoint's most frequent error)."""
    changes: tuple[tuple[str, str, str], ...] = ()
    """Up to 3 anchors that changed: (item id, baseline answer, this check's answer)."""
    recheck: Recheck | None = None
    """The re-check made when this check's count crossed the threshold."""


@dataclass
class CheckResult:
    seq: int
    slot: int | None
    run_id: str | None
    steps: list[EndpointStep] = field(default_factory=list)
    held_by: str | None = None
    """Set when another watcher holds this check: this one made nothing (its holder's name)."""
    skipped: CostStop | None = None
    """Set when a cost cap kept this check from being made (stored `skipped-cost`: no call)."""
    cost: dict[str, RegimeCost] = field(default_factory=dict)
    """What the check cost per endpoint (its run's and re-checks' stored calls)."""

    @property
    def alarms(self) -> list[EndpointStep]:
        return [s for s in self.steps if s.step.alarm]

    @property
    def gaps(self) -> list[EndpointStep]:
        return [s for s in self.steps if s.step.gap]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def open_watch(store: Store, name: str, origin: float, new: WatchSettings) -> WatchSettings:
    """The watch's stored settings (made from `new`, with `origin` its clock, if it has none)."""
    row = store.ensure_watch(name, origin, new.model_dump_json(), _now_iso())
    return WatchSettings.model_validate_json(row.settings_json)


@dataclass(frozen=True)
class Watch:
    """A watch as a command names it: its database, lineup file and name; the settings it is made
    with if the store has none yet; where its notes go."""

    db: str
    lineup_path: Path
    name: str
    new: WatchSettings | None = None
    log: Log | None = None
    lease: float = LEASE_S
    """Seconds a check is held for, renewed while it is made (several watchers: `_lease`)."""
    caps: CostCaps = field(default_factory=CostCaps)
    """The cost caps checked before a check starts (`_cost.gate`)."""


def make_check(watch: Watch, *, now: float, slot: int | None = None) -> CheckResult:
    """Make the watch's next check (or finish one left running whose holder is gone): its run,
    then every endpoint's detector step (a crossing re-checked first), stored. `now`: the watch's
    clock. A check another watcher holds is left to it (`held_by`: nothing made). A lineup that
    cannot run at all (a missing key variable, an unknown provider) raises `RunError` and leaves
    no check behind."""
    db, name, owner = watch.db, watch.name, me()
    lineup = load(watch.lineup_path)
    with closing(Store(db)) as store:
        settings = open_watch(store, name, now, watch.new or WatchSettings())
        checks = store.watch_checks(name)
        until = time.time() + watch.lease
        if checks and checks[-1].status == "running":
            last = checks[-1]
            seq, slot = last.seq, last.slot
            mine = last.owner == owner or gone(last, time.time())
            if not (mine and store.take_over_check(name, seq, owner, until, last.owner)):
                return CheckResult(seq, slot, last.run_id, held_by=last.owner or "?")
        elif slot is not None and any(c.slot == slot for c in checks):
            return CheckResult(checks[-1].seq, slot, None, held_by="another watcher (done)")
        else:
            seq = (checks[-1].seq if checks else 0) + 1
            derived = check_lineup(lineup, settings, seq)
            preflight(resolve_lineup(derived))  # a lineup that cannot run: no check
            stop = gate(store, name, lineup, settings, seq, now, watch.caps)
            if stop is not None:
                if not store.claim_check(name, seq, slot, now, status=SKIPPED):
                    return CheckResult(seq, slot, None, held_by="another watcher")
                return CheckResult(seq, slot, None, skipped=stop)
            if not store.claim_check(name, seq, slot, now, owner, until):
                return CheckResult(seq, slot, None, held_by="another watcher")
    derived = check_lineup(lineup, settings, seq)
    log = watch.log or (lambda _m: None)
    with Heartbeat(db, name, seq, owner, watch.lease, log):
        run_id, failed = run_lineup(db, derived, watch.log)
        with closing(Store(db)) as store:
            if run_id is not None:
                store.set_check_run(name, seq, run_id)
            result = CheckResult(seq, slot, run_id)
            records, baseline = _steps(store, watch, settings, derived, failed, result)
            if not store.finish_check(name, seq, now, records, baseline, owner):
                return CheckResult(seq, slot, run_id, held_by="another watcher (took it over)")
            result.cost = actual(store, check_runs(store, name, [seq]))
    return result


def _history(
    store: Store, name: str
) -> tuple[dict[str, DetectorState], dict[str, dict[str, str]], dict[str, int]]:
    """Per endpoint: its detector after its last check, and its baseline answers — both of its
    current baseline (after its last acknowledged change: none yet, a new one forms) — and that
    baseline's number (the acknowledged changes so far)."""
    last_ack: dict[str, int] = {}
    epochs: dict[str, int] = {}
    for endpoint, after in store.watch_acks(name):
        last_ack[endpoint] = max(after, last_ack.get(endpoint, 0))
        epochs[endpoint] = epochs.get(endpoint, 0) + 1
    states: dict[str, DetectorState] = {}
    for s in store.watch_steps(name):  # by check: the last one wins
        if s.seq > last_ack.get(s.endpoint, 0):
            states[s.endpoint] = DetectorState.model_validate_json(s.state_json)
    baseline: dict[str, dict[str, str]] = {}
    for a in store.baseline_answers(name):
        if a.epoch == epochs.get(a.endpoint, 0):
            baseline.setdefault(a.endpoint, {})[a.item_id] = a.answer
    return states, baseline, epochs


def acknowledge(db: str, name: str, endpoint: str) -> int:
    """Acknowledge a change of `endpoint`: its next checks form a new baseline (its history is
    kept). Returns the last check before it; `ValueError` for an unknown watch or endpoint."""
    with closing(Store(db)) as store:
        if store.watch(name) is None:
            raise ValueError(f"no watch {name!r} in {store.path}")
        steps = [s for s in store.watch_steps(name) if s.endpoint == endpoint]
        if not steps:
            raise ValueError(f"watch {name!r} has checked no endpoint {endpoint!r}")
        store.ack_watch(name, endpoint, steps[-1].seq, _now_iso())
        return steps[-1].seq


def _steps(
    store: Store,
    watch: Watch,
    settings: WatchSettings,
    check: Lineup,
    failed: str | None,
    result: CheckResult,
) -> tuple[list[WatchStepRecord], list[BaselineAnswer]]:
    """Every endpoint's detector stepped with its count; a crossing re-checked (`_recheck`)."""
    states, baseline, epochs = _history(store, watch.name)
    got = answers(store, result.run_id)
    records: list[WatchStepRecord] = []
    kept: list[BaselineAnswer] = []
    anchors = anchor_ids(settings)
    for ep in check.endpoints:
        before = states.get(ep.name) or DetectorState(settings=settings.detector)
        base = baseline.get(ep.name, {})
        ok = got.get(ep.name, ({}, Counter()))
        again = ask_again(watch.db, check, ep.name, watch.log) if settings.recheck else None
        st = step_endpoint(anchors, settings.min_answered, before, ok, base, failed, again)
        c, state, step, recheck = st.count, st.state, st.step, recheck_of(st)
        epoch = epochs.get(ep.name, 0)
        kept += [BaselineAnswer(ep.name, i, result.seq, ok[0][i], epoch) for i in st.fresh]
        diff = tuple((i, base[i], a) for i, a in c.changed.items())[:3]
        result.steps.append(EndpointStep(ep.name, step, state, c.why, diff, recheck))
        records.append(
            WatchStepRecord(
                seq=result.seq,
                endpoint=ep.name,
                phase=step.phase,
                gap=step.gap,
                alarm=step.alarm,
                n=step.n,
                changed=step.changed,
                statistic=step.statistic,
                threshold=step.threshold,
                why=c.why,
                state_json=state.model_dump_json(),
                recheck_json=None if recheck is None else json.dumps(recheck.as_json()),
            )
        )
    return records, kept
