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

import hashlib
import secrets
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bakeoff._pipeline import Hooks, RunRequest, RunStopped, drive, preflight
from bakeoff.lineups import Lineup, purposes
from bakeoff.plugins import load, resolve_lineup
from bakeoff.runs import config_hash
from bakeoff.store import BaselineAnswer, Store, WatchStepRecord
from bakeoff.watch._detector import DetectorSettings, DetectorState, Step, update

GREEDY = purposes.fidelity_suite("greedy")


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
    detector: DetectorSettings = Field(default_factory=DetectorSettings)


def rotating_seed(pool_seed: int, seq: int) -> int:
    digest = hashlib.sha256(f"watch-rotating:{pool_seed}:{seq}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


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


@dataclass
class CheckResult:
    seq: int
    slot: int | None
    run_id: str | None
    steps: list[EndpointStep] = field(default_factory=list)

    @property
    def alarms(self) -> list[EndpointStep]:
        return [s for s in self.steps if s.step.alarm]

    @property
    def gaps(self) -> list[EndpointStep]:
        return [s for s in self.steps if s.step.gap]


class CheckInterrupted(Exception):
    """The check's run was interrupted (SIGTERM, Ctrl-C): it is made again on the next start."""


Log = Callable[[str], None]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def open_watch(store: Store, name: str, origin: float, new: WatchSettings) -> WatchSettings:
    """The watch's stored settings (made from `new`, with `origin` its clock, if it has none)."""
    row = store.ensure_watch(name, origin, new.model_dump_json(), _now_iso())
    return WatchSettings.model_validate_json(row.settings_json)


def _run(db: str, lineup: Lineup, log: Log | None) -> tuple[str | None, str | None]:
    """The check's run id (None and the cause when it could not be made: a gap for every
    endpoint). A complete run of the same check lineup (made before a crash) is taken as it is."""
    with closing(Store(db)) as store:
        prior = store.complete_run(config_hash(resolve_lineup(lineup)))
    if prior is not None:
        return prior["id"], None
    request = RunRequest(db=db, report=False, check=False, use_cache=False)
    try:
        outcome = drive(lineup, request, Hooks(log=log))
    except RunStopped as e:
        return e.run_id, str(e)
    if outcome.status != "complete":
        raise CheckInterrupted(f"check interrupted: run {outcome.summary.run_id} {outcome.status}")
    return outcome.summary.run_id, None


@dataclass(frozen=True)
class Watch:
    """A watch as a command names it: its database, lineup file and name; the settings it is made
    with if the store has none yet; where its notes go."""

    db: str
    lineup_path: Path
    name: str
    new: WatchSettings | None = None
    log: Log | None = None


def make_check(watch: Watch, *, now: float, slot: int | None = None) -> CheckResult:
    """Make the watch's next check (or finish one left running): its run, then every endpoint's
    detector step, stored. `now`: the watch's clock. A lineup that cannot run at all (a missing
    key variable, an unknown provider) raises `RunError` and leaves no check behind."""
    db, name, log = watch.db, watch.name, watch.log
    lineup_path, new = watch.lineup_path, watch.new
    lineup = load(lineup_path)
    with closing(Store(db)) as store:
        settings = open_watch(store, name, now, new or WatchSettings())
        checks = store.watch_checks(name)
        if checks and checks[-1].status == "running":
            seq, slot = checks[-1].seq, checks[-1].slot
        else:
            seq = (checks[-1].seq if checks else 0) + 1
            derived = check_lineup(lineup, settings, seq)
            preflight(resolve_lineup(derived))  # a lineup that cannot run: no check
            store.begin_check(name, seq, slot, now)
    derived = check_lineup(lineup, settings, seq)
    run_id, failed = _run(db, derived, log)
    with closing(Store(db)) as store:
        if run_id is not None:
            store.set_check_run(name, seq, run_id)
        result = CheckResult(seq, slot, run_id)
        records, answers = _steps(store, name, settings, lineup, run_id, failed, seq, result)
        store.finish_check(name, seq, now, records, answers)
    return result


def _answers(store: Store, run_id: str | None) -> dict[str, tuple[dict[str, str], Counter[str]]]:
    """Per endpoint: {item id: greedy answer} of its successful calls, and its errors' causes."""
    out: dict[str, tuple[dict[str, str], Counter[str]]] = {}
    if run_id is None:
        return out
    for c in store.calls(run_id):
        if c["suite"] != GREEDY:
            continue
        ok, errors = out.setdefault(c["endpoint"], ({}, Counter()))
        if c["status"] == "ok":
            ok[c["item_id"]] = c["output_text"] or ""
        else:
            errors[c["error_class"] or "error"] += 1
    return out


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
    name: str,
    settings: WatchSettings,
    lineup: Lineup,
    run_id: str | None,
    failed: str | None,
    seq: int,
    result: CheckResult,
) -> tuple[list[WatchStepRecord], list[BaselineAnswer]]:
    states, baseline, epochs = _history(store, name)
    got = _answers(store, run_id)
    anchors = anchor_ids(settings)
    records: list[WatchStepRecord] = []
    answers: list[BaselineAnswer] = []
    for ep in lineup.endpoints:
        state = states.get(ep.name) or DetectorState(settings=settings.detector)
        ok, errors = got.get(ep.name, ({}, Counter()))
        done = [i for i in anchors if i in ok]
        base = baseline.get(ep.name, {})
        why = None
        if len(done) < settings.min_answered * len(anchors):
            cause = failed or (errors.most_common(1)[0][0] if errors else "no answer")
            why = f"{len(done)}/{len(anchors)} anchors answered ({cause})"
            n = changed = 0
        elif state.phase == "baseline":
            fresh = [i for i in done if i not in base]
            epoch = epochs.get(ep.name, 0)
            answers += [BaselineAnswer(ep.name, i, seq, ok[i], epoch) for i in fresh]
            compared = [i for i in done if i in base]
            n = len(compared) if state.baseline_seen else len(fresh)
            changed = sum(ok[i] != base[i] for i in compared)
        else:
            compared = [i for i in done if i in base]
            n, changed = len(compared), sum(ok[i] != base[i] for i in compared)
        state, step = update(state, n, changed)
        diff = [(i, base[i], ok[i]) for i in done if i in base and ok[i] != base[i]][:3]
        result.steps.append(EndpointStep(ep.name, step, state, why, tuple(diff)))
        records.append(
            WatchStepRecord(
                seq=seq,
                endpoint=ep.name,
                phase=step.phase,
                gap=step.gap,
                alarm=step.alarm,
                n=step.n,
                changed=step.changed,
                statistic=step.statistic,
                threshold=step.threshold,
                why=why,
                state_json=state.model_dump_json(),
            )
        )
    return records, answers
