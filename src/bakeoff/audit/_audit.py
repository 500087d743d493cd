"""Running the audit: rounds of calls until every candidate is decided or the budget is spent.

Per round of `batch` prompts and per regime: the reference answers each prompt (twice at T=0: the
second answer is the null — the engine's own nondeterminism), every undecided candidate answers once.
All calls go through the run's endpoints and are stored like any other call (suites
`fidelity.greedy` / `fidelity.sampled`), so `bakeoff audit --rerun` recomputes verdicts from the store.
After each round the evidence is looked at; a candidate whose e-process crossed 1/alpha is decided
("different") and gets no more calls — anytime-valid testing makes that early stop legitimate.
Before each round the cost cap is checked (`audit.max_cost`, `_cap.py`): a round projected past it
is not started, and the verdicts are those of the calls made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import orjson

from bakeoff.audit._analysis import SUITES, analyse, asks_top_logprobs
from bakeoff.audit._cap import stop_if_capped
from bakeoff.audit._errors import AuditError
from bakeoff.audit._factories import (
    alternative_scorers_for,
    scorer_factory_for,
    scorer_identities,
)
from bakeoff.audit._verdict import stop_threshold
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.runs import EndpointSession, Job, call_id
from bakeoff.store import Store, Verdict
from bakeoff.suites import Item
from bakeoff.suites.fidelity import audit_items

if TYPE_CHECKING:
    from bakeoff.audit._stored import StoredScorer
    from bakeoff.audit._types import ScorerLoad

Params = dict[str, object]
"""Body fields of an audit call, as they go to the wire."""


def audit_items_for_run(
    store: Store, run_id: str, settings: AuditSettings
) -> dict[str, list[Item]]:
    """The run's audit prompts per regime: stored on first use, read back afterwards. `settings`
    must be the applied ones (`applied_settings`: the seed drawn)."""
    out: dict[str, list[Item]] = {}
    for regime in settings.regimes:
        suite = SUITES[regime]
        rows = store.items(run_id, suite)
        if not rows:
            items = audit_items(regime, settings)
            store.add_items(run_id, suite, [it.stored() for it in items])
            rows = store.items(run_id, suite)
        out[regime] = [Item.from_stored(r) for r in rows][: settings.budget]
    return out


RUN_ANALYSIS = "run"
"""The id of a run's own analysis (its `verdicts`); re-analyses with other settings get a hash."""


def applied_settings(store: Store, run_id: str, settings: AuditSettings) -> AuditSettings:
    """The settings the run's audit applies: those stored with it when it has begun (a resume, a
    rerun), else `settings` with a fresh private seed drawn (unless one is given) and stored
    before any audit call, so the prompts can be rebuilt and the analysis repeated."""
    own = store.analysis(run_id, RUN_ANALYSIS)
    if own is not None:
        return AuditSettings.model_validate(own["settings"])
    if settings.seed is None:
        import secrets

        settings = settings.model_copy(update={"seed": secrets.randbits(62)})
    return settings


def _analysis_id(settings: AuditSettings) -> str:
    # the cost cap decides which calls are made, not what they show: not part of the analysis
    # a designated reference's analyses keep the ids they had before `reference: consensus` was
    dropped = {"max_cost"} | (
        {"reference", "consensus_within"} if settings.reference == "lineup" else set()
    )
    dumped = settings.model_dump(mode="json", exclude=dropped)
    blob = orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
    return "a-" + hashlib.sha256(blob).hexdigest()[:10]


def _seed(*parts: object) -> int:
    h = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


NEUTRAL_SAMPLER: dict[str, dict[str, float]] = {
    "llama.cpp": {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0},
    "vllm": {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0},
    "sglang": {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0},
    "transformers": {"top_k": 0, "repetition_penalty": 1.0},
    "openai": {},
}
"""Per engine, the body fields that switch off its own sampler defaults: llama.cpp's server
truncates to top_k 40 and min_p 0.05 and penalises repeats by 1.1 — also at temperature 0, where
that decides greedy outputs (same F16 weights, llama.cpp vs PyTorch: 0/40 greedy outputs equal with
the defaults, 39/40 with these); vLLM and SGLang spell the penalty `repetition_penalty` and switch
top_k off with -1. Sent with every audit call, greedy and sampled."""


def engine_of(lineup: Lineup, name: str) -> str | None:
    """The engine serving an endpoint: its `engine`, else that of a local server (its
    `local.engine`, llama.cpp by default); a proxy is followed to its target."""
    seen = set()
    ep = lineup.endpoint(name)
    while ep.engine is None and ep.provider == "proxy" and ep.proxy and ep.name not in seen:
        seen.add(ep.name)
        ep = lineup.endpoint(ep.proxy.target)
    if ep.engine is not None:
        return ep.engine
    if ep.provider == "local" and ep.local is not None:
        return str(getattr(ep.local, "engine", "llama.cpp"))
    return None


def neutral_params_of(lineup: Lineup, name: str) -> Params:
    """The fields that switch off an endpoint's sampler defaults: its `neutral_params` (a proxy
    followed to its target), else its engine's (`NEUTRAL_SAMPLER`)."""
    ep = lineup.endpoint(name)
    if ep.neutral_params is None and ep.provider == "proxy" and ep.proxy is not None:
        ep = lineup.endpoint(ep.proxy.target)
    if ep.neutral_params is not None:
        return dict(ep.neutral_params)
    engine = engine_of(lineup, name)
    return dict(NEUTRAL_SAMPLER.get(engine, {})) if engine else {}


def audit_params_for(lineup: Lineup, name: str, settings: AuditSettings, regime: str) -> Params:
    """Extra body fields of an endpoint's audit calls in a regime: the neutral sampler of its
    engine (`NEUTRAL_SAMPLER`), then `audit.sampled_params` over them for sampled calls."""
    base = neutral_params_of(lineup, name)
    return {**base, **settings.sampled_params} if regime == "sampled" else base


def _stored_scorers(
    store: Store,
    run_id: str,
    scorer: ScorerLoad | None,
    alternatives: Mapping[str, ScorerLoad | None],
    *,
    replay: bool = False,
) -> tuple[ScorerLoad | None, dict[str, ScorerLoad], list[StoredScorer]]:
    """The scorers wrapped so that every answer is stored with the run and replayed from it
    (`StoredScorer`). With `replay`, a role that has stored answers is wrapped even when its
    scorer cannot be loaded here (no GGUF, no server): the stored answers are what it said."""
    from bakeoff.audit._stored import StoredScorer

    made: list[StoredScorer] = []

    def wrap(role: str, load: ScorerLoad | None) -> ScorerLoad | None:
        if load is None and not (replay and store.scorer_answers(run_id, role)):
            return None
        s = StoredScorer(store, run_id, role, load)
        made.append(s)

        def get() -> StoredScorer:
            return s

        return get

    ref = wrap("reference", scorer)
    alts = {name: wrap(f"alt:{name}", load) for name, load in alternatives.items()}
    return ref, {k: v for k, v in alts.items() if v is not None}, made


def _flush(scorers: list[StoredScorer]) -> None:
    for s in scorers:
        s.flush()


def _round_jobs(
    session: EndpointSession,
    settings: AuditSettings,
    items: dict[str, list[Item]],
    undecided: list[str],
    r: int,
    top: bool = False,
) -> dict[str, list[Job]]:
    """Round r's calls not yet stored: per regime, each prompt of the round asked of the
    reference (twice at T=0: its repeat is the null) and of every undecided candidate once.
    `top`: the reference's greedy calls also ask for `audit.top_logprobs` log-probabilities per
    token (the margins when there is no scorer: `_topk`); a provider that refuses them has them
    removed by the client (`drops`), and the analysis then says so."""
    lineup, store, run_id = session.lineup, session.store, session.run_id
    ref = lineup.reference  # None: consensus, every endpoint answers as a reference does
    done = store.succeeded_call_ids(run_id)
    jobs: dict[str, list[Job]] = {name: [] for name in [ref, *undecided] if name is not None}
    for regime, its in items.items():
        suite = SUITES[regime]
        ref_repeats = (0, 1) if regime == "greedy" else (0,)
        if ref is None:
            wanted = [(c, k) for c in undecided for k in ref_repeats]
        else:
            wanted = [(ref, k) for k in ref_repeats] + [(c, 0) for c in undecided]
        base = {ep: audit_params_for(lineup, ep, settings, regime) for ep, _ in wanted}
        for it in its[r * settings.batch : (r + 1) * settings.batch]:
            for ep, k in wanted:
                cid = call_id(run_id, ep, suite, it.id, k)
                if cid in done:
                    continue
                params = dict(base[ep])
                if regime == "sampled":
                    params["seed"] = _seed(ep, it.id, k)
                elif top and (ep == ref or ref is None):
                    params.update(logprobs=True, top_logprobs=settings.top_logprobs)
                # not streamed: usage (prompt tokens) is then reported by more servers
                jobs[ep].append(Job(cid, suite, it, k, params, stream=False))
    return jobs


def _announce(session: EndpointSession, jobs: dict[str, list[Job]]) -> None:
    """The round's calls added to each endpoint's progress."""
    for name, js in jobs.items():
        handle = session.handles[name]
        handle.progress.total += len(js)
        handle.notify()


def _begin(
    session: EndpointSession, settings: AuditSettings
) -> tuple[AuditSettings, dict[str, list[Item]], ScorerLoad | None, dict[str, ScorerLoad]]:
    """The applied settings (the private seed drawn, the alternatives resolved), the prompts and
    the scorers' loaders; the settings and the scorers' identities stored first (analysis `run`)."""
    lineup, store, run_id = session.lineup, session.store, session.run_id
    settings = applied_settings(store, run_id, settings)
    items = audit_items_for_run(store, run_id, settings)
    scorer_load = scorer_factory_for(lineup, settings, session)
    alt_loads = alternative_scorers_for(lineup, settings, session)  # checked before any call
    settings = settings.model_copy(update={"regimes": list(items), "alternatives": list(alt_loads)})
    if store.analysis(run_id, RUN_ANALYSIS) is None:
        identities = scorer_identities(lineup, settings, scorer_load is not None)
        store.put_analysis(
            run_id, RUN_ANALYSIS, settings.model_dump(mode="json"), identities, None, _now()
        )
    return settings, items, scorer_load, alt_loads


async def run_audit(
    session: EndpointSession,
    settings: AuditSettings,
    *,
    on_round: Callable[[int, dict[str, Verdict]], None] | None = None,
) -> dict[str, Verdict]:
    """Audit every non-reference endpoint of the session's lineup; store and return the verdicts.

    The applied settings (the private seed drawn, the alternatives resolved) and the scorers'
    identities are stored first (analysis `run`); every scorer answer is stored as it comes, so
    `bakeoff audit --rerun` rebuilds exactly this analysis from the store."""
    from bakeoff.audit._consensus import wanted

    lineup, store, run_id = session.lineup, session.store, session.run_id
    ref = lineup.reference
    everyone = wanted(lineup, settings)  # no designated reference: the consensus's
    if ref is None and not everyone:
        raise AuditError(
            "the audit needs a `reference:` endpoint in the lineup, or `audit.reference: "
            "consensus` (docs/FIDELITY.md, 'No reference at all: consensus')"
        )
    settings, items, scorer_load, alt_loads = _begin(session, settings)
    scorer, alternatives, wrapped = _stored_scorers(store, run_id, scorer_load, alt_loads)
    names = [e.name for e in lineup.endpoints if e.name != ref]
    undecided = names
    threshold = stop_threshold(settings, len(names) - everyone)
    top = asks_top_logprobs(settings, scorer)

    async def analysed() -> dict[str, Verdict]:
        out = await _analysed(store, run_id, lineup, settings, items, scorer, alternatives)
        _flush(wrapped)
        return out

    for r in range(-(-settings.budget // settings.batch)):
        jobs = _round_jobs(session, settings, items, undecided, r, top)
        if stop_if_capped(store, run_id, lineup, settings, jobs, r) is not None:
            break  # the round would pass audit.max_cost: the verdicts are those of the calls made
        _announce(session, jobs)
        await session.run_jobs(jobs)
        verdicts = await analysed()
        if on_round:
            on_round(r, verdicts)
        if everyone:  # every endpoint answers until every verdict is decided (none: cannot tell)
            undecided = [] if all(_decided(v, threshold) for v in verdicts.values()) else names
        else:
            undecided = [c for c in undecided if not _decided(verdicts[c], threshold)]
        if not undecided:
            break
    verdicts = await analysed()
    for ep, v in verdicts.items():
        store.put_verdict(run_id, ep, v)
    own = store.analysis(run_id, RUN_ANALYSIS)
    assert own is not None
    store.put_analysis(
        run_id, RUN_ANALYSIS, own["settings"], own["scorers"], stated(verdicts), _now()
    )
    return verdicts


async def _analysed(
    store: Store,
    run_id: str,
    lineup: Lineup,
    settings: AuditSettings,
    items: dict[str, list[Item]],
    scorer: ScorerLoad | None,
    alternatives: dict[str, ScorerLoad],
) -> dict[str, Verdict]:
    """`analyse` over a snapshot of the stored calls, on a thread of its own (`off_loop`): the
    reference scorer (llama.cpp in-process, or a server over HTTP) never blocks the event loop."""
    from bakeoff.audit._source import CallSource, off_loop

    source = CallSource.snapshot(store, run_id, tuple(e.name for e in lineup.endpoints))
    return await off_loop(
        lambda: analyse(
            source,
            run_id,
            lineup,
            settings,
            items,
            scorer,
            alternatives=alternatives,
        )
    )


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def stated(verdicts: dict[str, Verdict]) -> dict[str, object]:
    """The verdicts as an analysis stores them and reads them back: what a comparison compares."""
    from bakeoff.store import dumps

    out: dict[str, object] = orjson.loads(dumps({k: v.to_json() for k, v in verdicts.items()}))
    return out


def _decided(v: Verdict, threshold: float) -> bool:
    """No more calls for this candidate: "same" is claimed (the bound holds at any stopping
    time), or its e-value reached the threshold at which "different" is decided whatever the
    others show (1/alpha, or K/alpha under fdr)."""
    if v.verdict == "same":
        return True
    return v.e_value >= threshold or (v.verdict == "different" and v.multiplicity == "per_endpoint")
