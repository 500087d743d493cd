"""Calibration: how often the audit says what, on endpoints whose truth is known (`bakeoff
calibrate`, `bench/fidelity_power.py`).

Each repetition is one real audit — `run_audit`, the rule `bakeoff run` applies: the margin, the
"same" bound, early stopping, the combination of tests — against the local ladder. Repetition r of
a regime gets prompts [r·budget, (r+1)·budget) of one long seeded sequence and its own proxy seeds,
so no two repetitions share a prompt, a sample or a routing draw: they are independent audits, and
each rate is a binomial proportion with an exact (Clopper–Pearson) 95% interval.

Endpoints: F16 (reference); engine nulls — the same F16 weights with another prompt batch size, in
F32, on PyTorch (transformers, one request at a time) and on PyTorch under concurrent load (four
requests batched together, so each one's numerics depend on the others); quantizations (Q8_0,
Q4_K_M, Q3_K_S, Q2_K); proxy distortions (an injected system prompt, forced greedy decoding, 10%
and 30% of requests routed to Q2_K).

Kept repetitions (`db_dir`, one database per regime and repetition) are resumed or re-read, never
collected twice. Measured: a greedy repetition of all 12 candidates at budget 70 takes 9-11 min on
2 cores (10 repetitions: 100 min).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypedDict

from bakeoff.audit._analysis import SUITES
from bakeoff.audit._audit import run_audit
from bakeoff.lineups import AuditSettings, parse_lineup
from bakeoff.runs import EndpointSession, RunOptions, config_hash, create_run, execute
from bakeoff.stats import clopper_pearson
from bakeoff.store import Store, Verdict
from bakeoff.suites.fidelity import audit_items


class Tally(TypedDict):
    """One candidate's verdicts over the repetitions."""

    n: int
    counts: dict[str, int]
    claims: list[str]


class RegimeResults(TypedDict):
    budget: int
    endpoints: dict[str, Tally]


class Calibration(TypedDict):
    """What `calibrate` found (`bakeoff calibrate --json`'s file)."""

    alpha: float
    reps: int
    scorer: str
    regimes: dict[str, RegimeResults]


_LOCAL = "provider: local\n    model: smol\n    max_concurrency: {c}\n    local: {{{spec}}}"
ENDPOINTS: dict[str, tuple[str, str]] = {
    # name: (what it is, its lineup entry); `{seed}` is the repetition's
    "f16-batch8": ("null", _LOCAL.format(c=1, spec="variant: F16, n_threads: 1, n_batch: 8")),
    "f16-2t": ("null", _LOCAL.format(c=1, spec="variant: F16, n_threads: 2")),
    "f32": ("null", _LOCAL.format(c=1, spec="variant: F32, n_threads: 1")),
    "f16-torch": (
        "null",
        _LOCAL.format(c=1, spec="variant: F16, engine: transformers, n_threads: 1, max_batch: 1"),
    ),
    "f16-torch-load": (
        "null",
        _LOCAL.format(c=4, spec="variant: F16, engine: transformers, n_threads: 1, max_batch: 4"),
    ),
    "q8_0": ("quantized", _LOCAL.format(c=1, spec="variant: Q8_0, n_threads: 1")),
    "q4_k_m": ("quantized", _LOCAL.format(c=1, spec="variant: Q4_K_M, n_threads: 1")),
    "q3_k_s": ("quantized", _LOCAL.format(c=1, spec="variant: Q3_K_S, n_threads: 1")),
    "q2_k": ("quantized", _LOCAL.format(c=1, spec="variant: Q2_K, n_threads: 1")),
    "sysprompt": (
        "distorted",
        "provider: proxy\n    model: smol\n    proxy: {target: f16, inject_system: "
        '"You are a pirate. Answer every question in pirate speak."}',
    ),
    "greedy-forced": (
        "distorted",
        "provider: proxy\n    model: smol\n    proxy: {target: f16, force_greedy: true}",
    ),
    "mix10-q2k": (
        "distorted",
        "provider: proxy\n    model: smol\n"
        "    proxy: {target: f16, route_fraction: 0.1, route_to: q2_k, seed: {seed}}",
    ),
    "mix30-q2k": (
        "distorted",
        "provider: proxy\n    model: smol\n"
        "    proxy: {target: f16, route_fraction: 0.3, route_to: q2_k, seed: {seed}}",
    ),
}
NULLS = [n for n, (kind, _) in ENDPOINTS.items() if kind == "null"]
PROMPT_SEED = 0
"""The one seeded prompt sequence every repetition takes its own slice of: fixed, so a kept
calibration resumes on the same prompts (the audit's own default draws a fresh private seed)."""
CHECKPOINTS = {"greedy": (10, 20, 50), "sampled": (20, 50, 100)}
"""Budgets at which "different by k calls" is counted (the audit's full budget too)."""


def _needed(names: Iterable[str]) -> list[str]:
    """The endpoints to serve for these candidates: the routes' target (Q2_K) too."""
    out = list(dict.fromkeys(names))
    if any(n.startswith("mix") for n in out) and "q2_k" not in out:
        out.append("q2_k")
    return out


SCORERS = ("local", "top_logprobs")
"""`local`: the reference's GGUF scores in-process (what a user who can host the model has);
`top_logprobs`: no scorer at all, the greedy margins from the reference endpoint's own top-5 (what
a user of a hosted reference has: "Hosted reference, no scorer" in docs/FIDELITY.md)."""


def lineup_text(
    regime: str,
    budget: int,
    rep: int,
    names: Iterable[str],
    alpha: float,
    scorer: str = "local",
) -> str:
    """The lineup of one repetition: the reference, the candidates, the audit of one regime."""
    lines = [
        "reference: f16",
        "run: {suites: []}",
        "audit:",
        f"  regimes: [{regime}]",
        f"  budget: {budget}",
        "  batch: 10",
        f"  alpha: {alpha}",
        *([f"  scorer: {scorer}"] if scorer != "local" else []),
        "endpoints:",
        "  - name: f16\n    " + _LOCAL.format(c=1, spec="variant: F16, n_threads: 1"),
    ]
    for name in _needed(names):
        lines.append(f"  - name: {name}\n    " + ENDPOINTS[name][1].replace("{seed}", str(rep)))
    return "\n".join(lines) + "\n"


def _rep(
    db: Path,
    regime: str,
    budget: int,
    rep: int,
    names: list[str],
    alpha: float,
    log: Callable[[str], None],
    scorer: str = "local",
) -> dict[str, Verdict]:
    """One independent audit (resumed or re-read from `db` when kept): its verdicts."""
    lineup = parse_lineup(lineup_text(regime, budget, rep, names, alpha, scorer))
    store = Store(db)
    h = config_hash(lineup)
    done = store.complete_run(h)
    if done is not None:
        log(f"{regime} repetition {rep + 1}: no new call, it is kept in {db}")
        verdicts = dict(store.verdicts(done["id"]))
        store.close()
        return verdicts
    prior = store.unfinished_run(h)
    run_id = prior["id"] if prior is not None else create_run(store, lineup)
    suite = SUITES[regime]
    if not store.items(run_id, suite):  # this repetition's own prompts, read by run_audit
        items = audit_items(regime, lineup.audit, seed=PROMPT_SEED, n=(rep + 1) * budget)[
            rep * budget :
        ]
        store.add_items(run_id, suite, [it.stored() for it in items])

    async def after(session: EndpointSession) -> None:
        await run_audit(session, lineup.audit)

    t0 = time.time()
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    verdicts = dict(store.verdicts(run_id))
    store.close()
    claims = ", ".join(f"{n} {verdicts[n].claim}" for n in names if n in verdicts)
    log(f"{regime} repetition {rep + 1} ({time.time() - t0:.0f} s): {claims}")
    return verdicts


def calibrate(
    *,
    reps: int = 10,
    greedy_budget: int | None = None,
    sampled_budget: int = 100,
    endpoints: list[str] | None = None,
    alpha: float = 0.05,
    db_dir: Path | None = None,
    log: Callable[[str], None] = print,
    scorer: str = "local",
) -> Calibration:
    """Per regime and candidate: the verdict of every repetition (its claim and the calls it
    took) and the rates `different@k`, `same`, `inconclusive` as counts out of `reps`."""
    names = endpoints or list(ENDPOINTS)
    if greedy_budget is None:  # the audit's own default
        greedy_budget = AuditSettings().budget
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}: choose from {list(SCORERS)}")
    unknown = [n for n in names if n not in ENDPOINTS]
    if unknown:
        raise ValueError(
            f"unknown calibration endpoint(s) {unknown}: choose from {list(ENDPOINTS)}"
        )
    import tempfile

    results: Calibration = {"alpha": alpha, "reps": reps, "scorer": scorer, "regimes": {}}
    tag = "" if scorer == "local" else f"{scorer}-"  # its own databases: another audit's lineup
    with tempfile.TemporaryDirectory() as tmp:
        base = db_dir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        for regime, budget in (("greedy", greedy_budget), ("sampled", sampled_budget)):
            if not budget:
                continue
            per_rep = [
                _rep(
                    base / f"{tag}{regime}-{r:02d}.db", regime, budget, r, names, alpha, log, scorer
                )
                for r in range(reps)
            ]
            results["regimes"][regime] = {
                "budget": budget,
                "endpoints": {n: _tally(regime, budget, [v[n] for v in per_rep]) for n in names},
            }
    return results


def _tally(regime: str, budget: int, verdicts: list[Verdict]) -> Tally:
    """Counts over the repetitions: `different@k` (decided "different" within k calls), `same`,
    `inconclusive` (at the end of the budget), and each repetition's claim."""
    counts: dict[str, int] = {}
    for k in (*CHECKPOINTS[regime], budget):
        if k <= budget:
            counts[f"different@{k}"] = sum(
                v.verdict == "different" and v.calls <= k for v in verdicts
            )
    for verdict in ("same", "inconclusive"):
        counts[verdict] = sum(v.verdict == verdict for v in verdicts)
    return {
        "n": len(verdicts),
        "counts": counts,
        "claims": [f"{v.claim} @{v.calls}" for v in verdicts],
    }


def _cell(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} ({lo:.2f}–{hi:.2f})"


def format_table(results: Calibration) -> str:
    """A markdown table per regime: each rate as k/n with its Clopper–Pearson 95% interval, the
    engine nulls pooled beneath their rows."""
    lines = [
        f"Verdicts of {results['reps']} independent audits per endpoint (disjoint prompts, fresh "
        f"samples) at alpha={results['alpha']}, margins from "
        + (
            "the reference's GGUF scored in-process"
            if results.get("scorer", "local") == "local"
            else "the reference endpoint's own top-5 log-probabilities (no scorer)"
        )
        + "; each cell k/n (95% Clopper–Pearson interval). "
        "different@k: decided 'different' within k calls; on a null row that is the "
        "false-positive rate.",
    ]
    for regime, res in results["regimes"].items():
        eps = res["endpoints"]
        cols = list(next(iter(eps.values()))["counts"])
        lines += [
            "",
            f"{regime} regime (budget {res['budget']}):",
            "",
            "| endpoint | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        nulls = [n for n in eps if n in NULLS]
        order = nulls + [n for n in eps if n not in NULLS]
        for name in order:
            row = eps[name]
            label = f"{name} (null)" if name in NULLS else name
            cells = [_cell(row["counts"][c], row["n"]) for c in cols]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            if len(nulls) > 1 and name == nulls[-1]:
                total = sum(eps[n]["n"] for n in nulls)
                pooled = [_cell(sum(eps[n]["counts"][c] for n in nulls), total) for c in cols]
                lines.append("| engine nulls pooled | " + " | ".join(pooled) + " |")
    return "\n".join(lines)


def write_json(results: Calibration, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))
