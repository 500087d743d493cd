"""Where greedy outputs of the local ladder part from the F16 reference's, and how sure the reference
was of its own token there (the margin the audit's greedy test thresholds: `audit.margin`).

Each variant generates greedily in-process (llama.cpp, neutral sampler: no repeat penalty, no top-k,
no min-p) on the audit's greedy prompts; the F16 reference scorer scores both outputs by teacher
forcing and the margin at the first differing token is log p_ref(reference's token) − log
p_ref(candidate's token). Nulls: F16 itself on another prompt batch size, F32 (other
rounding, same weights) and, with --torch, the transformers engine (float32 PyTorch on the F16
weights). Prints, per variant, how many prompts part and the margins' quantiles, and how many
divergences each candidate margin would keep.

Usage: python bench/greedy_margins.py [--n 60] [--torch]   (~5 min on 2 cores; more with --torch)
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bakeoff.audit._greedy import first_divergence
from bakeoff.audit._scorer import LocalReferenceScorer
from bakeoff.audit._stats import normalize_text
from bakeoff.lineups import AuditSettings
from bakeoff.local import variant_path
from bakeoff.suites.fidelity import audit_items

Outputs = list[tuple[str, str]]

MARGINS = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]


def _llama_outputs(variant: str, prompts: list, max_tokens: int, **kw: int) -> Outputs:
    from llama_cpp import Llama

    llm = Llama(model_path=str(variant_path(variant)), n_ctx=1024, verbose=False, seed=0, **kw)
    out = []
    for msgs in prompts:
        r = llm.create_chat_completion(
            messages=msgs,
            temperature=0.0,
            max_tokens=max_tokens,
            repeat_penalty=1.0,
            top_k=0,
            min_p=0.0,
        )
        ch = r["choices"][0]
        out.append((ch["message"]["content"] or "", ch["finish_reason"]))
    return out


def _torch_outputs(prompts: list, max_tokens: int) -> Outputs:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = variant_path("F16")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, torch_dtype=torch.float32
    )
    out = []
    for msgs in prompts:
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):
            ids = ids["input_ids"]
        with torch.no_grad():
            g = model.generate(ids, max_new_tokens=max_tokens, do_sample=False)
        new = g[0, ids.shape[1] :]
        finish = "stop" if tok.eos_token_id in new.tolist() else "length"
        out.append((tok.decode(new, skip_special_tokens=True), finish))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--torch", action="store_true", help="also the transformers engine")
    ap.add_argument("--json", help="write the margins here")
    args = ap.parse_args()
    items = audit_items("greedy", AuditSettings(max_tokens=args.max_tokens), seed=0, n=args.n)
    prompts = [it.messages for it in items]
    scorer = LocalReferenceScorer(variant_path("F16"))
    ref = _llama_outputs("F16", prompts, args.max_tokens, n_threads=1)
    runs = {
        "F16 (batch 8)": lambda: _llama_outputs(
            "F16", prompts, args.max_tokens, n_threads=1, n_batch=8
        ),
        "F32": lambda: _llama_outputs("F32", prompts, args.max_tokens, n_threads=1),
    }
    if args.torch:
        runs["F16 on PyTorch fp32"] = lambda: _torch_outputs(prompts, args.max_tokens)
    for v in ("Q8_0", "Q4_K_M", "Q3_K_S", "Q2_K"):
        runs[v] = lambda v=v: _llama_outputs(v, prompts, args.max_tokens, n_threads=1)
    report: dict[str, list] = {}
    head = "".join(f"  >{m:<4g}" for m in MARGINS)
    print(f"{'variant':<26} differ  margin p10/p50/p90     kept at margin{head}", flush=True)
    for name, make in runs.items():
        outs = make()
        margins: list[float | None] = []
        n_diff = 0
        for msgs, (rt, rf), (ct, cf) in zip(prompts, ref, outs, strict=True):
            if normalize_text(rt) == normalize_text(ct):
                continue
            n_diff += 1
            d = first_divergence(
                scorer, scorer.prompt_tokens(msgs), rt, ct, reference_finish=rf, candidate_finish=cf
            )
            if d is not None:
                margins.append(d.margin)
        report[name] = margins
        known = np.array([m for m in margins if m is not None])
        qs = np.percentile(known, [10, 50, 90]) if known.size else [np.nan] * 3
        kept = "".join(f"  {sum(1 for m in margins if m is None or m > t):>5d}" for t in MARGINS)
        print(
            f"{name:<26} {n_diff:>3d}/{len(prompts):<3d} {qs[0]:6.2f}/{qs[1]:5.2f}/{qs[2]:5.2f}"
            f"      {kept}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
