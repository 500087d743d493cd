"""Running the audit: rounds of calls until every candidate is decided or the budget is spent.

Per round of `batch` prompts and per regime: the reference answers each prompt (twice at T=0: the
second answer is the null — the engine's own nondeterminism), every undecided candidate answers once.
All calls go through the run's endpoints and are stored like any other call (suites
`fidelity.greedy` / `fidelity.sampled`), so `bakeoff audit --rerun` recomputes verdicts from the store.
After each round the evidence is looked at; a candidate whose e-process crossed 1/alpha is decided
("different") and gets no more calls — anytime-valid testing makes that early stop legitimate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from bakeoff.audit._analysis import SUITES, analyse
from bakeoff.audit._verdict import stop_threshold
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.runs import EndpointSession, Job, call_id
from bakeoff.store import Store
from bakeoff.suites import Item
from bakeoff.suites.fidelity import audit_items


class AuditError(Exception):
    pass


def audit_items_for_run(
    store: Store, run_id: str, settings: AuditSettings
) -> dict[str, list[Item]]:
    """The run's audit prompts per regime: stored on first use, read back afterwards."""
    out: dict[str, list[Item]] = {}
    for regime in settings.regimes:
        suite = SUITES[regime]
        rows = store.items(run_id, suite)
        if not rows:
            items = audit_items(
                regime,
                seed=settings.seed,
                n=settings.budget,
                max_tokens=settings.max_tokens,
                logprobs=settings.logprobs,
                top_p=settings.top_p,
            )
            store.add_items(run_id, suite, [it.stored() for it in items])
            rows = store.items(run_id, suite)
        out[regime] = [Item.from_stored(r) for r in rows][: settings.budget]
    return out


def _seed(*parts: object) -> int:
    h = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


NEUTRAL_SAMPLER: dict[str, dict[str, Any]] = {
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


def neutral_params_of(lineup: Lineup, name: str) -> dict[str, Any]:
    """The fields that switch off an endpoint's sampler defaults: its `neutral_params` (a proxy
    followed to its target), else its engine's (`NEUTRAL_SAMPLER`)."""
    ep = lineup.endpoint(name)
    if ep.neutral_params is None and ep.provider == "proxy" and ep.proxy is not None:
        ep = lineup.endpoint(ep.proxy.target)
    if ep.neutral_params is not None:
        return dict(ep.neutral_params)
    engine = engine_of(lineup, name)
    return dict(NEUTRAL_SAMPLER.get(engine, {})) if engine else {}


def audit_params_for(
    lineup: Lineup, name: str, settings: AuditSettings, regime: str
) -> dict[str, Any]:
    """Extra body fields of an endpoint's audit calls in a regime: the neutral sampler of its
    engine (`NEUTRAL_SAMPLER`), then `audit.sampled_params` over them for sampled calls."""
    base = neutral_params_of(lineup, name)
    return {**base, **settings.sampled_params} if regime == "sampled" else base


def scorer_factory_for(
    lineup: Lineup, settings: AuditSettings, session: EndpointSession | None = None
) -> Callable[[], Any] | None:
    """A loader of the reference token scorer, or None when there is none (`audit.scorer`)."""
    if settings.scorer == "none":
        return None
    if settings.scorer == "endpoint":
        return _endpoint_scorer(lineup, settings, session)
    path: Any = settings.reference_gguf
    ref = lineup.endpoint(lineup.reference) if lineup.reference else None
    if path is None and ref is not None and ref.provider == "local" and ref.local is not None:
        from bakeoff.local import variant_path

        path = variant_path(ref.local.variant)
    if path is None:
        if settings.scorer == "local":
            raise AuditError(
                "audit.scorer is local but no reference GGUF is known: set reference_gguf"
            )
        return None
    cache: dict[str, Any] = {}

    def load() -> Any:
        if "s" not in cache:
            from bakeoff.audit._scorer import LocalReferenceScorer

            cache["s"] = LocalReferenceScorer(path)
        return cache["s"]

    return load


DEFAULT_ALTERNATIVES = ["Q8_0", "Q4_K_M"]


def alternative_scorers_for(
    lineup: Lineup, settings: AuditSettings, session: EndpointSession | None = None
) -> dict[str, Callable[[], Any]]:
    """Loaders of the scorers of `audit.alternatives` (the suspected substitutes), by name."""
    names = settings.alternatives
    ref = lineup.endpoint(lineup.reference) if lineup.reference else None
    if names is None:
        local_ref = ref is not None and ref.provider == "local"
        names = DEFAULT_ALTERNATIVES if local_ref and settings.scorer != "none" else []
    out: dict[str, Callable[[], Any]] = {}
    for name in names:
        if any(e.name == name for e in lineup.endpoints):
            out[name] = _endpoint_scorer(lineup, settings, session, name=name)
        else:
            out[name] = _gguf_scorer(name)
    return out


def _gguf_scorer(spec: str) -> Callable[[], Any]:
    """A local variant name of the packaged model, or a GGUF path (checked now, loaded on use)."""
    from pathlib import Path

    from bakeoff.local import VARIANTS

    if spec not in VARIANTS and not Path(spec).expanduser().is_file():
        raise AuditError(
            f"audit.alternatives: {spec!r} is neither a lineup endpoint, a local variant "
            f"({', '.join(VARIANTS)}) nor a GGUF file"
        )
    cache: dict[str, Any] = {}

    def load() -> Any:
        if "s" not in cache:
            from bakeoff.audit._scorer import LocalReferenceScorer
            from bakeoff.local import variant_path

            path = variant_path(spec) if spec in VARIANTS else Path(spec).expanduser()
            cache["s"] = LocalReferenceScorer(path)
        return cache["s"]

    return load


def _endpoint_scorer(
    lineup: Lineup,
    settings: AuditSettings,
    session: EndpointSession | None,
    *,
    name: str | None = None,
) -> Callable[[], Any]:
    """The HTTP reference scorer on a lineup endpoint: its live URL and key when the endpoints are
    running (a run), else its configured base_url (a rerun) with the key from the environment."""
    import os

    from bakeoff.audit._vllm_scorer import http_reference_scorer

    name = name or settings.scorer_endpoint or lineup.reference
    if name is None:
        raise AuditError("audit.scorer endpoint needs scorer_endpoint or a reference")
    ep = lineup.endpoint(name)
    runner = session.runners.get(name) if session is not None else None
    if runner is not None and runner.client is not None:
        base_url, key = runner.client.base_url, runner.api_key
    elif ep.base_url:
        base_url = ep.base_url
        key = os.environ.get(ep.api_key_env) if ep.api_key_env else None
    else:
        raise AuditError(
            f"the scorer endpoint {name} has no fixed base_url: it can only score while running "
            "(use audit.scorer local for a rerun)"
        )
    cache: dict[str, Any] = {}

    def load() -> Any:
        if "s" not in cache:
            cache["s"] = http_reference_scorer(
                base_url,
                ep.model,
                engine=ep.engine,
                batch=settings.scorer_batch,
                api_key=key,
                chat_template=settings.scorer_template,
                shift=settings.scorer_shift,
            )
        return cache["s"]

    return load


async def run_audit(
    session: EndpointSession,
    settings: AuditSettings,
    *,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Audit every non-reference endpoint of the session's lineup; store and return the verdicts."""
    lineup, store, run_id = session.lineup, session.store, session.run_id
    ref = lineup.reference
    if ref is None:
        raise AuditError("the audit needs a `reference:` endpoint in the lineup")
    items = audit_items_for_run(store, run_id, settings)
    scorer = scorer_factory_for(lineup, settings, session)
    alternatives = alternative_scorers_for(lineup, settings, session)  # checked before any call
    undecided = [e.name for e in lineup.endpoints if e.name != ref]
    params_for = {
        (e.name, regime): audit_params_for(lineup, e.name, settings, regime)
        for e in lineup.endpoints
        for regime in items
    }
    n_rounds = -(-settings.budget // settings.batch)
    threshold = stop_threshold(settings, len(undecided))
    verdicts: dict[str, dict[str, Any]] = {}
    for r in range(n_rounds):
        done = store.succeeded_call_ids(run_id)
        jobs: dict[str, list[Job]] = {name: [] for name in [ref, *undecided]}
        for regime, its in items.items():
            suite = SUITES[regime]
            for it in its[r * settings.batch : (r + 1) * settings.batch]:
                ref_repeats = (0, 1) if regime == "greedy" else (0,)
                wanted = [(ref, k) for k in ref_repeats] + [(c, 0) for c in undecided]
                for ep, k in wanted:
                    cid = call_id(run_id, ep, suite, it.id, k)
                    if cid in done:
                        continue
                    params = dict(params_for[(ep, regime)])
                    if regime == "sampled":
                        params["seed"] = _seed(ep, it.id, k)
                    # not streamed: usage (prompt tokens) is then reported by more servers
                    jobs[ep].append(Job(cid, suite, it, k, params, stream=False))
        for name, js in jobs.items():
            runner = session.runners[name]
            runner.progress.total += len(js)
            runner._notify()
        await session.run_jobs(jobs)
        verdicts = analyse(
            store, run_id, lineup, settings, items, scorer, alternatives=alternatives
        )
        if on_round:
            on_round(r, verdicts)
        undecided = [c for c in undecided if not _decided(verdicts[c], threshold)]
        if not undecided:
            break
    verdicts = analyse(store, run_id, lineup, settings, items, scorer, alternatives=alternatives)
    for ep, v in verdicts.items():
        store.put_verdict(run_id, ep, v["verdict"], v["p_value"], v)
    return verdicts


def _decided(v: dict[str, Any], threshold: float) -> bool:
    """No more calls for this candidate: "same" is claimed (the bound holds at any stopping
    time), or its e-value reached the threshold at which "different" is decided whatever the
    others show (1/alpha, or K/alpha under fdr)."""
    if v["verdict"] == "same":
        return True
    return v["e_value"] >= threshold or (
        v["verdict"] == "different" and v["multiplicity"] == "per_endpoint"
    )


def rerun_audit(store: Store, run_id: str, lineup: Lineup) -> dict[str, dict[str, Any]]:
    """Recompute (and store) the verdicts of a run from its stored calls: no call is made."""
    settings = lineup.audit
    items = {}
    for regime in ("greedy", "sampled"):
        rows = store.items(run_id, SUITES[regime])
        if rows:
            items[regime] = [Item.from_stored(r) for r in rows]
    if not items:
        raise AuditError(f"run {run_id} has no fidelity calls to re-analyse")
    settings = settings.model_copy(update={"regimes": list(items)})
    scorer = scorer_factory_for(lineup, settings) if "sampled" in items else None
    alternatives = alternative_scorers_for(lineup, settings)
    verdicts = analyse(store, run_id, lineup, settings, items, scorer, alternatives=alternatives)
    for ep, v in verdicts.items():
        store.put_verdict(run_id, ep, v["verdict"], v["p_value"], v)
    return verdicts
