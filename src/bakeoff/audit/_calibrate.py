"""Calibration: false-positive rate and power of the fidelity audit on the local ladder, per test,
regime and budget (`bakeoff calibrate`, `bench/fidelity_power.py`).

One pool of stored samples per endpoint, then many audits drawn from it: each repetition takes a random
subset (and order) of the pool's prompts of the cell's size and runs the sequential test on it, exactly
as `bakeoff audit` would have seen those calls. Repetitions share prompts (they are subsets of one
pool), so they are not independent draws of fresh prompts: say so beside the figures.

Endpoints: F16 (reference), nulls (F16 on another thread count, F32), quantizations (Q8_0, Q4_K_M,
Q3_K_S, Q2_K) and proxy distortions (system-prompt injection, forced greedy, 30% routed to Q2_K).
Regimes: greedy (T=0, our betting test on output disagreement) and sampled (T=1, our betting test on
reference-scored mean log-probability, beside the MMD/Hamming baseline on the same samples).

Takes ~20-30 min on 2 cores with the default pools (collecting them dominates).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bakeoff.audit._analysis import SUITES, _load
from bakeoff.audit._audit import audit_items_for_run, run_audit, scorer_factory_for
from bakeoff.audit._stats import bounded, mmd_hamming_test, normalize_text, symmetric_betting_test
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute
from bakeoff.store import Store

NULLS = ["f16-other", "f32"]
LINEUP = """
reference: f16
run: {{suites: []}}
audit: {{regimes: [{regimes}], budget: {budget}, batch: {budget}, alpha: 1.0e-12, max_tokens: 48}}
endpoints:
  - {{name: f16, provider: local, model: smol, local: {{variant: F16, n_threads: 1}}, max_concurrency: 1}}
  - name: f16-other
    provider: local
    model: smol
    local: {{variant: F16, n_threads: 2}}
    max_concurrency: 1
  - {{name: f32, provider: local, model: smol, local: {{variant: F32}}, max_concurrency: 1}}
  - {{name: q8_0, provider: local, model: smol, local: {{variant: Q8_0}}, max_concurrency: 1}}
  - {{name: q4_k_m, provider: local, model: smol, local: {{variant: Q4_K_M}}, max_concurrency: 1}}
  - {{name: q3_k_s, provider: local, model: smol, local: {{variant: Q3_K_S}}, max_concurrency: 1}}
  - {{name: q2_k, provider: local, model: smol, local: {{variant: Q2_K}}, max_concurrency: 1}}
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
    lineup = parse_lineup(LINEUP.format(regimes=regime, budget=pool))
    store = Store(db)
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


def sampled_diffs(store, run_id, lineup, items):
    calls = _load(store, run_id)
    suite = SUITES["sampled"]
    factory = scorer_factory_for(lineup, lineup.audit)
    assert factory is not None, "the local reference has a GGUF"
    scorer = factory()
    rng = np.random.default_rng(0)
    out = {}
    names = {k[0] for k in calls.ok} - {"f16"}
    for name in sorted(names):
        d, tc, tr = [], [], []
        for it in items:
            r0, c0 = calls.ok.get(("f16", suite, it.id, 0)), calls.ok.get((name, suite, it.id, 0))
            if not (r0 and c0):
                continue
            p = scorer.prompt_tokens(it.messages or [])
            d.append(
                scorer.score(p, c0["output_text"] or "", rng).mean_logprob
                - scorer.score(p, r0["output_text"] or "", rng).mean_logprob
            )
            tc.append(c0["output_text"] or "")
            tr.append(r0["output_text"] or "")
        out[name] = (np.array(d), tc, tr)
    return out


def calibrate(
    *,
    greedy_pool: int = 40,
    sampled_pool: int = 150,
    reps: int = 40,
    alpha: float = 0.05,
    db_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Rejection rate per endpoint and cell (`greedy@k`, `sampled@k`, `MMD@k`) over `reps` subsets."""
    rng = np.random.default_rng(7)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = db_dir or Path(tmp)
        if greedy_pool:
            store, run_id, _, items = collect(base / "greedy.db", "greedy", greedy_pool, log)
            for name, d in greedy_diffs(store, run_id, items).items():
                row = results.setdefault(name, {})
                for k in (10, 20, 30):
                    if k > len(d):
                        continue
                    hits = [
                        symmetric_betting_test(rng.permutation(d)[:k].tolist(), alpha).rejected_at
                        is not None
                        for _ in range(reps)
                    ]
                    row[f"greedy@{k}"] = float(np.mean(hits))
                row["greedy differ rate"] = float(np.mean(d > 0))
        if sampled_pool:
            store, run_id, lineup, items = collect(
                base / "sampled.db", "sampled", sampled_pool, log
            )
            for name, (d, tc, tr) in sampled_diffs(store, run_id, lineup, items).items():
                row = results.setdefault(name, {})
                for k in (50, 100, 150, 250):
                    if k > len(d):
                        continue
                    ours, mmd = [], []
                    for rep in range(reps):
                        idx = rng.permutation(len(d))[:k]
                        res = symmetric_betting_test(bounded(d[idx].tolist()), alpha)
                        ours.append(res.rejected_at is not None)
                        p = mmd_hamming_test(
                            [tc[i] for i in idx], [tr[i] for i in idx], n_perm=200, seed=rep
                        )[1]
                        mmd.append(p <= alpha)
                    row[f"sampled@{k}"] = float(np.mean(ours))
                    row[f"MMD@{k}"] = float(np.mean(mmd))
    return results


def format_table(results: dict[str, dict[str, float]], alpha: float, reps: int) -> str:
    cols = sorted(
        {c for r in results.values() for c in r}, key=lambda c: (c.split("@")[0], len(c), c)
    )
    lines = [
        f"rejection rate at alpha={alpha} over {reps} subsets of one pool per endpoint",
        "(rows f16-other and f32 are nulls: their rate is the false-positive rate)",
        "",
        "endpoint".ljust(14) + "".join(c.rjust(19) for c in cols),
    ]
    for name in sorted(results, key=lambda n: (n not in NULLS, n)):
        row = results[name]
        lines.append(
            name.ljust(14) + "".join((f"{row[c]:.2f}" if c in row else "-").rjust(19) for c in cols)
        )
    return "\n".join(lines)
