"""`bakeoff watch` measured on the local servers: false alarms of change-free endpoints and the
detection delay of silent switches, replayed under the simulated clock through the watch's own
detector (`bakeoff.watch.replay`: the count, the e-detector step and the re-check a check makes).

Two parts:

1. RECORD (once; kept in ~/.cache/bakeoff/watch-bench, re-read, never re-collected): the greedy
   answers (T=0, the watch's `max_tokens`) of the watch's own prompt source (suite
   `fidelity.greedy`, a pool of 240 anchors = 10 runs x the default 24) from real servers, each
   recording an ordinary stored run through bakeoff's pipeline (a watch check's lineup), in slices
   of 80 prompts, each slice with freshly started servers:
   - `llama-a`: llama.cpp F16, Q8_0, Q4_K_M (1 thread each) and F16 behind the distortion proxy
     injecting a system prompt (the default lineup's `f16-sysprompt`), one request at a time;
   - `llama-t2`: F16 again, restarted on 2 threads;
   - `torch-a`: F16 on the PyTorch engine, three servers side by side, the prompts asked 1, 2
     or 4 at a time (the other requests in flight are batched with them); the first 160 prompts.
   `--record-budget S` stops starting slices after S seconds: run it again to go on.
2. REPLAY (seconds): per simulated run, its own 24 anchors (disjoint between runs); at each check
   one recording of what the endpoint serves is drawn; the detector is stepped as a check steps it.
   Nulls: F16 (restart / other threads), f16-torch under varying load, and F16 on the two
   deployments drawn per request (answers that really vary), each >= 600 watched checks;
   switches F16 -> Q4_K_M, F16 -> system prompt, F16 -> Q8_0 after check `--switch-after`.
   The figures and what they mean: docs/WATCH.md.

Usage: python bench/watch_null.py [--record-budget 540] [--no-record] [--runs-per-group 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from contextlib import closing
from pathlib import Path

from bakeoff.audit import audit_items, prompt_tokens_bound
from bakeoff.lineups import AuditSettings
from bakeoff.local import cache_dir
from bakeoff.plugins import load
from bakeoff.stats import clopper_pearson
from bakeoff.store import Store
from bakeoff.watch import DetectorSettings, Scenario, Source, WatchSettings, check_lineup, replay
from bakeoff.watch._runs import GREEDY, answers, run_lineup

POOL_SEED = 340_034
POOL = 240
SLICE = 80
ANCHORS = 24
MODEL = "SmolLM2-135M-Instruct"
PIRATE = "You are a pirate. Answer every question in pirate speak."


def _local(name: str, conc: int, **local: object) -> str:
    spec = ", ".join(f"{k}: {v}" for k, v in local.items())
    return (
        f"  - {{name: {name}, provider: local, model: {MODEL}, local: {{{spec}}},"
        f" max_concurrency: {conc}}}\n"
    )


def _torch(*concs: int) -> str:
    return "".join(
        _local(f"f16-torch-c{c}", c, variant="F16", engine="transformers", n_threads=1)
        for c in concs
    )


RECORDINGS: dict[str, str] = {
    "llama-a": _local("f16", 1, variant="F16", n_threads=1)
    + _local("q8_0", 1, variant="Q8_0", n_threads=1)
    + _local("q4_k_m", 1, variant="Q4_K_M", n_threads=1)
    + f"  - {{name: sysprompt, provider: proxy, model: {MODEL},"
    f" proxy: {{target: f16, inject_system: '{PIRATE}'}}, max_concurrency: 1}}\n",
    "llama-t2": _local("f16", 1, variant="F16", n_threads=2),
    "torch-a": _torch(1, 2, 4),
}
"""Recordings in the order they are made; each is a lineup's endpoints (each local endpoint its
own server: the three PyTorch servers of `torch-a` run side by side, one thread each)."""
SEQ = {"llama-a": 1000, "torch-a": 2000, "llama-t2": 3000}
TORCH_SLICES = 2
"""The PyTorch engine's recordings cover the first 160 prompts (6 runs of 24 anchors): at 1 to 2 s
of CPU a call on this 2-core machine, the whole pool at every load would be over 30 min."""


def slices(rec: str) -> int:
    return TORCH_SLICES if rec.startswith("torch") else POOL // SLICE


def home() -> Path:
    d = Path(os.environ.get("BAKEOFF_WATCH_BENCH") or cache_dir() / "watch-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def pool_settings() -> WatchSettings:
    return WatchSettings(pool_seed=POOL_SEED, anchors=POOL, rotating=0)


def pool_ids() -> list[str]:
    return [f"fid-{POOL_SEED}-{i:04d}" for i in range(POOL)]


def _slice_file(rec: str, k: int) -> Path:
    return home() / "recordings" / f"{rec}.{k}.json"


def record_slice(rec: str, k: int) -> dict[str, dict[str, str]]:
    """One slice of a recording: a check run of these prompts (servers started for it)."""
    path = home() / "lineups" / f"{rec}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("endpoints:\n" + RECORDINGS[rec])
    seq = SEQ[rec] + k  # each slice its own run (config hash)
    lineup = check_lineup(load(path), pool_settings(), seq).model_dump(mode="json")
    lineup["run"]["suite_options"][GREEDY]["only"] = pool_ids()[k * SLICE : (k + 1) * SLICE]
    db = str(home() / "runs.db")
    run_id, failed = run_lineup(db, type(load(path)).model_validate(lineup), None)
    if failed:
        print(f"  {rec} slice {k}: {failed}", flush=True)
    with closing(Store(db)) as store:
        got = answers(store, run_id)
    out = {ep: ok for ep, (ok, _errors) in got.items()}
    errors = {ep: dict(e) for ep, (_ok, e) in got.items() if e}
    _slice_file(rec, k).parent.mkdir(parents=True, exist_ok=True)
    _slice_file(rec, k).write_text(json.dumps({"run_id": run_id, "answers": out, "errors": errors}))
    return out


def record(budget_s: float) -> bool:
    """Make the missing slices until `budget_s` is spent; True when every slice is there."""
    t0 = time.monotonic()
    for rec in RECORDINGS:
        for k in range(slices(rec)):
            if _slice_file(rec, k).exists():
                continue
            if time.monotonic() - t0 > budget_s:
                return False
            s0, c0 = time.monotonic(), _children_cpu()
            got = record_slice(rec, k)
            n = {ep: len(v) for ep, v in got.items()}
            print(
                f"recorded {rec} slice {k}: {n} in {time.monotonic() - s0:.0f} s wall, "
                f"{_children_cpu() - c0 + 0:.0f} s CPU of its servers",
                flush=True,
            )
    return True


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def recordings() -> dict[str, dict[str, str]]:
    """Every recorded source: `<recording>/<endpoint>` -> {item id: answer}."""
    out: dict[str, dict[str, str]] = {}
    for rec in RECORDINGS:
        for k in range(POOL // SLICE):
            f = _slice_file(rec, k)
            if not f.exists():
                continue
            for ep, ok in json.loads(f.read_text())["answers"].items():
                out.setdefault(f"{rec}/{ep}", {}).update(ok)
    return out


MIX = "F16 on two engines, each request to a deployment drawn at random"
NULLS = {
    "F16 (llama.cpp restarted, 1 or 2 threads)": ["llama-a/f16", "llama-t2/f16"],
    "f16-torch under varying load (1, 2, 4 in flight)": [
        f"torch-a/f16-torch-c{c}" for c in (1, 2, 4)
    ],
    MIX: ["llama-a/f16", "llama-t2/f16"] + [f"torch-a/f16-torch-c{c}" for c in (1, 2, 4)],
}
SWITCHES = {"F16 -> Q4_K_M": "llama-a/q4_k_m", "F16 -> system prompt": "llama-a/sysprompt"}
SWITCHES["F16 -> Q8_0"] = "llama-a/q8_0"


def _source(name: str, recs: dict[str, dict[str, str]], keys: list[str]) -> Source:
    return Source(name, [recs[k] for k in keys if k in recs], per_request=name == MIX)


def _cp(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n if n else 0:.3f} (95% CP {lo:.3f}-{hi:.3f})"


def _groups(src: Source) -> list[list[str]]:
    """Disjoint runs of anchors, those every recording of `src` answered in full."""
    ids = pool_ids()
    groups = [ids[g * ANCHORS : (g + 1) * ANCHORS] for g in range(POOL // ANCHORS)]
    return [g for g in groups if all(all(i in r for i in g) for r in src.recordings)]


def nulls(recs: dict[str, dict[str, str]], det: DetectorSettings, runs: int, checks: int) -> None:
    """Change-free endpoints: every run its own anchors, each check a recording drawn afresh."""
    print(
        f"\n== nulls: {runs} runs per anchor group x {checks} checks (baseline {det.baseline_checks})"
    )
    for name, keys in NULLS.items():
        src = _source(name, recs, keys)
        if not src.recordings:
            print(f"{name}: not recorded")
            continue
        monitored = alarms = alarmed_runs = total = 0
        dist: dict[int, int] = {}
        for g, anchors in enumerate(_groups(src)):
            for r in range(runs):
                steps = replay(Scenario(anchors, src, checks), det, random.Random(1000 * g + r))
                total += 1
                watched = [s for s in steps if s.step.statistic is not None or s.step.alarm]
                monitored += len(watched)
                alarms += sum(s.step.alarm for s in steps)
                alarmed_runs += any(s.step.alarm for s in steps)
                for s in watched:
                    dist[s.step.changed] = dist.get(s.step.changed, 0) + 1
                if g == 0 and r == 0:
                    trace = " ".join(
                        f"{s.step.changed}/{s.step.n}"
                        + ("" if s.step.statistic is None else f":{s.step.statistic:.3g}")
                        for s in steps
                    )
                    print(f"{name}: run 1, per check changed/n[:statistic]: {trace}")
        h = checks - det.baseline_checks
        print(
            f"{name}: {len(src.recordings)} recordings, {total} runs, {monitored} monitored checks,"
            f" changed-count histogram {dict(sorted(dist.items()))}\n"
            f"  false alarms per check {_cp(alarms, monitored)}; promised <= 1/arl = {1 / det.arl:.4f}"
            f"\n  runs alarmed within {h} monitored checks {_cp(alarmed_runs, total)};"
            f" promised <= {h}/arl = {h / det.arl:.3f}",
            flush=True,
        )


def switches(recs: dict[str, dict[str, str]], det: DetectorSettings, after: int) -> None:
    """F16 then, from check `after` + 1 on, the switched variant; each run its own anchors."""
    f16 = _source("F16", recs, NULLS["F16 (llama.cpp restarted, 1 or 2 threads)"])
    print(f"\n== switches after check {after} (baseline {det.baseline_checks}); delay in checks")
    for name, key in SWITCHES.items():
        if key not in recs or not f16.recordings:
            print(f"{name}: not recorded")
            continue
        to = Source(name, [recs[key]])
        delays: list[int | None] = []
        first: list[str] = []
        stats: list[float] = []
        for g, anchors in enumerate(_groups(Source(name, [*f16.recordings, recs[key]]))):
            sc = Scenario(anchors, f16, after + 10, to, after + 1)
            steps = replay(sc, det, random.Random(g))
            alarm = next((s for s in steps if s.step.alarm), None)
            delays.append(None if alarm is None else alarm.check - after)
            if alarm is not None and alarm.step.statistic is not None:
                stats.append(alarm.step.statistic)
            post = next(s for s in steps if s.check == after + 1)
            first.append(f"{post.step.changed}/{post.step.n}")
        early = sum(1 for d in delays if d is not None and d < 1)
        within = sum(1 for d in delays if d is not None and 1 <= d <= 3)
        print(
            f"{name}: delays {['-' if d is None else d for d in delays]}, first switched check"
            f" changed {first}\n  alarmed within <= 3 checks {_cp(within, len(delays))};"
            f" before the switch: {early}; statistic at the alarm"
            f" {min(stats, default=0):.3g}-{max(stats, default=0):.3g} (threshold {det.arl:g})",
            flush=True,
        )


def costs() -> None:
    """A check's calls and tokens at the defaults: the prompt side as the watch's cost cap bounds
    it (UTF-8 bytes + 32, over the pool's prompts), the output side as F16 answered (recorded)."""
    with closing(Store(str(home() / "runs.db"))) as store:
        out, n = store.db.execute(
            "SELECT AVG(completion_tokens), COUNT(*) FROM calls WHERE endpoint = 'f16'"
            " AND status = 'ok' AND completion_tokens IS NOT NULL"
        ).fetchone()
    if not n:
        print("\n== cost: no recorded F16 call")
        return
    items = audit_items("greedy", seed=POOL_SEED, n=POOL)
    bound = sum(prompt_tokens_bound(i) for i in items) / len(items)
    w = WatchSettings()
    calls = w.anchors + w.rotating
    day = calls * 4
    usd = day * (bound * 3 + out * 15) / 1e6
    worst = day * (bound * 3 + AuditSettings().max_tokens * 15) / 1e6
    print(
        f"\n== cost at the defaults ({w.anchors} anchors + {w.rotating} rotating, --every 6h):"
        f" {calls} calls per check, {day} a day; per call <= {bound:.0f} prompt tokens (the"
        f" watch's bound) and {out:.1f} output tokens (F16's mean over {n} calls, max"
        f" {AuditSettings().max_tokens}): {day * bound:,.0f} + {day * out:,.0f} tokens a day,"
        f" ${usd:.4f} a day at $3 / $15 per million (${worst:.4f} at max_tokens; re-checks apart)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record-budget", type=float, default=540.0)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--runs-per-group", type=int, default=5, help="null runs per anchor group")
    ap.add_argument("--checks", type=int, default=24, help="checks per null run")
    ap.add_argument("--switch-after", type=int, default=6, help="checks before a switch")
    args = ap.parse_args()
    done = True if args.no_record else record(args.record_budget)
    if not done:
        print("recording not complete: run again to go on", flush=True)
        sys.exit(3)
    recs = recordings()
    det = DetectorSettings()  # the watch's defaults: arl 1000, baseline 4 checks
    print(f"recordings: { {k: len(v) for k, v in recs.items()} }")
    nulls(recs, det, args.runs_per_group, args.checks)
    switches(recs, det, args.switch_after)
    costs()


if __name__ == "__main__":
    main()
