"""The vLLM reference scorer's own cost per sample, on loopback against the fake vLLM server.

`bakeoff fake-server --persona vllm` runs in its own process (its toy model costs nothing, so what
is measured is the scorer's side: building requests, HTTP on loopback, reading `prompt_logprobs`,
plus the fake's own JSON). Each sample is an audit prompt (the fidelity suite's, in the fake's chat
template) and a completion of `--completion-tokens` one-token words, scored with `score_many` at
batch 1 and at `--batch`, each on a fresh scorer (nothing memoised); once with the fake answering
at once, once with every answer delayed `--rtt-ms` (a round trip to a remote cluster: where
batching and the parallel /tokenize calls pay). Printed per configuration: wall time and client
CPU per sample and per 1,000 scored tokens, requests sent (/tokenize + /v1/completions).

Also printed: the audit prompts' token counts under the packaged SmolLM2 tokenizer and chat
template (in-process llama.cpp), the figure the cost estimate in docs/FIDELITY.md multiplies.

Usage: python bench/vllm_scoring.py [--n 200] [--batch 16] [--completion-tokens 48] [--rtt-ms 20]
(~30 s)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time

from bakeoff.audit._vllm_scorer import VllmReferenceScorer
from bakeoff.fake import _vllm as toy
from bakeoff.suites.fidelity import audit_items


def _server(rtt_ms: float) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "bakeoff", "fake-server", "--port", "0", "--persona", "vllm"]
    cmd += ["--model", "m", "--ttft-ms", str(rtt_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    m = re.search(r"(http://\S+)", proc.stdout.readline())
    if not m:
        proc.kill()
        raise SystemExit("the fake server did not start")
    return proc, m.group(1)


def _pairs(url: str, n: int, completion_tokens: int) -> tuple[list[tuple[list[int], str]], int]:
    """(prompt ids, completion) per sample, and the total tokens scored."""
    words = [w for w in toy.VOCAB if w.startswith(" ")]
    rng = random.Random(0)
    scorer = VllmReferenceScorer(url, "m")
    pairs, total = [], 0
    for it in audit_items("sampled", n=n):
        prompt = scorer.prompt_tokens(it.messages or [])
        completion = "".join(rng.choice(words) for _ in range(completion_tokens))
        pairs.append((prompt, completion))
        total += len(prompt) + completion_tokens
    return pairs, total


def _measure(url: str, pairs: list[tuple[list[int], str]], batch: int) -> dict[str, float]:
    scorer = VllmReferenceScorer(url, "m", batch=batch)
    wall, cpu = time.perf_counter(), time.process_time()
    scorer.score_many(pairs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "requests": -(-len(pairs) // batch) + len(pairs)}


def _smollm_prompt_tokens(n: int) -> list[int]:
    from bakeoff.audit._scorer import LocalReferenceScorer
    from bakeoff.local import variant_path

    local = LocalReferenceScorer(variant_path("Q4_1"), n_ctx=512)
    return [len(local.prompt_tokens(it.messages or [])) for it in audit_items("sampled", n=n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--completion-tokens", type=int, default=48)
    ap.add_argument("--rtt-ms", type=float, default=20.0, help="the second run's server delay")
    args = ap.parse_args()
    out: dict[str, object] = {"samples": args.n}
    for rtt in (0.0, args.rtt_ms):
        proc, url = _server(rtt)
        try:
            pairs, total = _pairs(url, args.n, args.completion_tokens)
            rows = {b: _measure(url, pairs, b) for b in (1, args.batch)}
        finally:
            proc.terminate()
            proc.wait(5)
        out["tokens_per_sample_fake"] = round(total / args.n, 1)
        for b, r in rows.items():
            out[f"rtt_{rtt:g}ms_batch_{b}"] = {
                "requests": r["requests"],
                "wall_ms_per_sample": round(1000 * r["wall_s"] / args.n, 3),
                "client_cpu_ms_per_sample": round(1000 * r["cpu_s"] / args.n, 3),
                "client_cpu_ms_per_1k_tokens": round(1e6 * r["cpu_s"] / total, 3),
            }
    lens = sorted(_smollm_prompt_tokens(args.n))
    out["smollm2_prompt_tokens"] = {
        "mean": round(sum(lens) / len(lens), 1),
        "p50": lens[len(lens) // 2],
        "max": lens[-1],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
