"""Calibration: false-positive rate and power of the fidelity audit on the local ladder, per test,
regime and budget (`bakeoff calibrate`, `bench/fidelity_power.py`).

One pool of stored samples per endpoint, then many audits drawn from it: each repetition takes a random
subset (and order) of the pool's prompts of the cell's size and runs the sequential test on it, exactly
as `bakeoff audit` would have seen those calls. Repetitions share prompts (they are subsets of one
pool), so they are not independent draws of fresh prompts: say so beside the figures.

Endpoints: F16 (reference), nulls (F16 with another prompt batch size, F32), quantizations (Q8_0, Q4_K_M,
Q3_K_S, Q2_K) and proxy distortions (system-prompt injection, forced greedy, 30% routed to Q2_K).
Regimes: greedy (T=0, our betting test on output disagreement) and sampled (T=1: the audit's sampled
tests — reference-scored mean log-probability and the likelihood-ratio tests toward Q8_0 and Q4_K_M —
combined as the audit combines them, by averaging their e-processes; beside the MMD/Hamming baseline
on the same samples).

Takes ~70-90 min on 2 cores with the default pools (66 min measured with a 150-prompt sampled
pool: collecting 40 min, scoring every sample under three models 24 min); kept pools and scores
(`db_dir`) are resumed or re-analysed, never collected twice.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bakeoff.audit._analysis import SUITES, _load
from bakeoff.audit._audit import (
    DEFAULT_ALTERNATIVES,
    _gguf_scorer,
    audit_items_for_run,
    run_audit,
    scorer_factory_for,
)
from bakeoff.audit._stats import bounded, mmd_hamming_test, normalize_text, symmetric_betting_test
from bakeoff.audit._verdict import combine as _combine
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, config_hash, create_run, execute
from bakeoff.store import Store

NULLS = ["f16-other", "f32"]
LINEUP = """
reference: f16
run: {{suites: []}}
audit:
  regimes: [{regimes}]
  budget: {budget}
  batch: {budget}
  alpha: 1.0e-12
  max_tokens: 48
  scorer: none  # the pools are analysed here, not after collecting
endpoints:
  - {{name: f16, provider: local, model: smol, local: {{variant: F16, n_threads: 1}}, max_concurrency: 1}}
  - name: f16-other
    provider: local
    model: smol
    local: {{variant: F16, n_threads: 1, n_batch: 8}}
    max_concurrency: 1
  - {{name: f32, provider: local, model: smol, local: {{variant: F32, n_threads: 1}}, max_concurrency: 1}}
  - {{name: q8_0, provider: local, model: smol, local: {{variant: Q8_0, n_threads: 1}}, max_concurrency: 1}}
  - name: q4_k_m
    provider: local
    model: smol
    local: {{variant: Q4_K_M, n_threads: 1}}
    max_concurrency: 1
  - name: q3_k_s
    provider: local
    model: smol
    local: {{variant: Q3_K_S, n_threads: 1}}
    max_concurrency: 1
  - {{name: q2_k, provider: local, model: smol, local: {{variant: Q2_K, n_threads: 1}}, max_concurrency: 1}}
  - name: sysprompt
    provider: proxy
    model: smol
    proxy: {{target: f16, inject_system: "You are a pirate. Answer every question in pirate speak."}}
  - {{name: greedy-forced, provider: proxy, model: smol, proxy: {{target: f16, force_greedy: true}}}}
  - name: mix30-q2k
    provider: proxy
    model: smol
    proxy: {{target: f16, route_fraction: 0.3, route_to: q2_k, seed: 1}}
"""


def collect(db: Path, regime: str, pool: int, log: Callable[[str], None] = print):
    """The pool of one regime: a stored run of the calibration lineup. A kept database that already
    holds this pool's run (same lineup) is resumed, not started again: finished calls are not
    repeated, and a finished pool makes no call."""
    lineup = parse_lineup(LINEUP.format(regimes=regime, budget=pool))
    store = Store(db)
    h = config_hash(lineup)
    done = store.complete_run(h)
    if done is not None:
        log(f"{regime} pool: no new call, it is kept in {db} (run {done['id']})")
        items = audit_items_for_run(store, done["id"], lineup.audit)[regime]
        return store, done["id"], lineup, items
    prior = store.unfinished_run(h)  # as `bakeoff run` finds a run to resume
    if prior is not None:
        run_id = prior["id"]
        log(f"resuming the kept {regime} pool (run {run_id})")
    else:
        run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    t0 = time.time()
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    log(f"collected the {regime} pool ({pool} prompts) in {time.time() - t0:.0f} s")
    items = audit_items_for_run(store, run_id, lineup.audit)[regime]
    return store, run_id, lineup, items


def greedy_diffs(store, run_id, items):
    calls = _load(store, run_id)
    suite = SUITES["greedy"]
    out = {}
    names = {k[0] for k in calls.ok} - {"f16"}
    for name in sorted(names):
        rows = []
        for it in items:
            r0, r1 = calls.ok.get(("f16", suite, it.id, 0)), calls.ok.get(("f16", suite, it.id, 1))
            c0 = calls.ok.get((name, suite, it.id, 0))
            if r0 and r1 and c0:
                rt, rt2, ct = (normalize_text(x["output_text"] or "") for x in (r0, r1, c0))
                rows.append(float(ct != rt) - float(rt2 != rt))
        out[name] = np.array(rows)
    return out


def sampled_diffs(store, run_id, lineup, items, log: Callable[[str], None] = print):
    """Per candidate: each sampled test's per-prompt differences (aligned: prompts every test could
    score), and the texts for the MMD baseline."""
    calls = _load(store, run_id)
    suite = SUITES["sampled"]
    factory = scorer_factory_for(lineup, lineup.audit.model_copy(update={"scorer": "auto"}))
    assert factory is not None, "the local reference has a GGUF"
    scorer = factory()
    alts = {name: _gguf_scorer(name)() for name in DEFAULT_ALTERNATIVES}
    rng = np.random.default_rng(0)
    t0 = time.time()

    def stats(it: Any, text: str) -> dict[str, float] | None:
        s = scorer.score(scorer.prompt_tokens(it.messages or []), text, rng)
        if not s.tokens:
            return None
        out = {"mean-logprob": s.mean_logprob}
        for name, alt in alts.items():
            a = alt.score(alt.prompt_tokens(it.messages or []), text, rng)
            if a.tokens != s.tokens:
                return None
            out[f"lr:{name}"] = float(np.mean(a.logprobs - s.logprobs))
        return out

    out = {}
    names = {k[0] for k in calls.ok} - {"f16"}
    for name in sorted(names):
        d: dict[str, list[float]] = {}
        tc, tr = [], []
        for it in items:
            r0, c0 = calls.ok.get(("f16", suite, it.id, 0)), calls.ok.get((name, suite, it.id, 0))
            if not (r0 and c0):
                continue
            sc, sr = stats(it, c0["output_text"] or ""), stats(it, r0["output_text"] or "")
            if sc is None or sr is None:
                continue
            for k in sc:
                d.setdefault(k, []).append(sc[k] - sr[k])
            tc.append(c0["output_text"] or "")
            tr.append(r0["output_text"] or "")
        out[name] = ({k: np.array(v) for k, v in d.items()}, tc, tr)
        log(f"scored {name}'s samples ({len(tc)} prompts, {time.time() - t0:.0f} s so far)")
    return out


SCORES_VERSION = 1
"""Of the per-prompt statistics `sampled_diffs` computes: kept scores of another version are
recomputed."""


def _cached_sampled_diffs(path: Path, store, run_id, lineup, items, log: Callable[[str], None]):
    """`sampled_diffs`, kept beside the pools: scoring every sample under three models is most of a
    rerun's time, and the same pool always scores the same."""
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("run_id") == run_id and kept.get("version") == SCORES_VERSION:
            log(f"scores of the kept sampled pool read from {path}")
            return {
                n: ({t: np.array(d) for t, d in v["d"].items()}, v["candidate"], v["reference"])
                for n, v in kept["endpoints"].items()
            }
    out = sampled_diffs(store, run_id, lineup, items, log)
    endpoints = {
        n: {"d": {t: d.tolist() for t, d in ds.items()}, "candidate": tc, "reference": tr}
        for n, (ds, tc, tr) in out.items()
    }
    path.write_text(
        json.dumps({"run_id": run_id, "version": SCORES_VERSION, "endpoints": endpoints})
    )
    return out


SAMPLED_CELLS = (50, 100, 150, 200, 250)


def calibrate(
    *,
    greedy_pool: int = 40,
    sampled_pool: int = 200,
    reps: int = 40,
    alpha: float = 0.05,
    db_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Rejection rate per endpoint and cell (`greedy@k`, `sampled@k` — the audit's sampled tests
    combined —, each test alone as `<test>@k`, `MMD@k`) over `reps` subsets."""
    rng = np.random.default_rng(7)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = db_dir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        if greedy_pool:
            store, run_id, _, items = collect(base / "greedy.db", "greedy", greedy_pool, log)
            for name, d in greedy_diffs(store, run_id, items).items():
                row = results.setdefault(name, {})
                for k in (10, 20, 30):
                    if k > len(d):
                        continue
                    greedy_hits = [
                        symmetric_betting_test(rng.permutation(d)[:k].tolist(), alpha).rejected_at
                        is not None
                        for _ in range(reps)
                    ]
                    row[f"greedy@{k}"] = float(np.mean(greedy_hits))
                row["greedy differ rate"] = float(np.mean(d > 0))
        if sampled_pool:
            store, run_id, lineup, items = collect(
                base / "sampled.db", "sampled", sampled_pool, log
            )
            diffs = _cached_sampled_diffs(
                base / "sampled_scores.json", store, run_id, lineup, items, log
            )
            for name, (ds, tc, tr) in diffs.items():
                row = results.setdefault(name, {})
                n = len(tc)
                for k in SAMPLED_CELLS:
                    if k > n:
                        continue
                    hits: dict[str, list[bool]] = {}
                    for rep in range(reps):
                        idx = rng.permutation(n)[:k]
                        paths = []
                        for test, d in ds.items():
                            res = symmetric_betting_test(bounded(d[idx].tolist()), alpha)
                            hits.setdefault(test, []).append(res.rejected_at is not None)
                            paths.append(res.wealth)
                        hits.setdefault("combined", []).append(max(_combine(paths)) >= 1.0 / alpha)
                        p = mmd_hamming_test(
                            [tc[i] for i in idx], [tr[i] for i in idx], n_perm=200, seed=rep
                        )[1]
                        hits.setdefault("MMD", []).append(p <= alpha)
                    for test, h in hits.items():
                        key = "sampled" if test == "combined" else test
                        row[f"{key}@{k}"] = float(np.mean(h))
    return results


def format_table(results: dict[str, dict[str, float]], alpha: float, reps: int) -> str:
    """Two markdown tables: the audit's decisions (greedy, sampled combined, MMD beside), then each
    sampled test alone."""
    cols = {c for r in results.values() for c in r}

    def order(c: str) -> tuple[str, int]:
        test, _, k = c.partition("@")
        return (test, int(k) if k else 0)

    main = [
        c for c in cols if c.split("@")[0] in ("greedy differ rate", "greedy", "sampled", "MMD")
    ]
    main.sort(
        key=lambda c: (
            ["greedy differ rate", "greedy", "sampled", "MMD"].index(c.split("@")[0]),
            order(c)[1],
        )
    )
    per_test = sorted((c for c in cols if c not in main), key=order)
    names = sorted(results, key=lambda n: (n not in NULLS, n))

    def table(columns: list[str]) -> list[str]:
        out = ["| endpoint | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name in names:
            row = results[name]
            cells = [f"{row[c]:.2f}" if c in row else "-" for c in columns]
            label = f"{name} (null)" if name in NULLS else name
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out

    lines = [
        f"Rejection rate at alpha={alpha} over {reps} random subsets (and orders) of one pool per",
        "endpoint; on a null row it is the false-positive rate. `sampled` = the audit's sampled",
        "tests combined (average of their e-processes); MMD = the MET baseline on the same samples.",
        "",
        *table(main),
    ]
    if per_test:
        lines += ["", "Each sampled test alone:", "", *table(per_test)]
    return "\n".join(lines)
