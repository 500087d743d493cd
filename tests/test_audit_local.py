"""The audit end to end on real llama.cpp servers of the local ladder."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from bakeoff.audit import rerun_audit, run_audit
from bakeoff.audit._scorer import LocalReferenceScorer
from bakeoff.lineups import parse_lineup
from bakeoff.local import variant_path
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from conftest import bakeoff


def test_reference_scorer_alignment_on_a_known_sentence():
    scorer = LocalReferenceScorer(variant_path("F16"))
    prompt = scorer.tokenize("The capital")
    s = scorer.score(prompt, " of France is Paris.")
    words = [scorer.llm.detokenize([t]).decode() for t in s.tokens]
    assert words[:2] == [" of", " France"]
    # teacher forcing, measured in-process: " of" after "The capital" is likely, not -10.8 (the
    # one-position shift of the server's echo logprobs)
    assert abs(s.logprobs[0] - (-0.339)) < 0.05
    # the same number from llama.cpp's own next-token distribution
    scorer.llm.reset()
    out = scorer.llm.create_completion("The capital", max_tokens=1, logprobs=10, temperature=0)
    top = out["choices"][0]["logprobs"]["top_logprobs"][0]
    assert abs(top[" of"] - s.logprobs[0]) < 1e-3
    assert s.ranks[0] == 0 and s.pit.min() >= 0 and s.pit.max() <= 1


LINEUP = """
reference: f16
defaults: {temperature: 0, max_tokens: 16}
run: {suites: []}
audit: {regimes: [greedy, sampled], budget: 24, batch: 12, max_tokens: 24, logprobs: true, seed: 0}
endpoints:
  - {name: f16, provider: local, model: smol, local: {variant: F16, n_threads: 1}, max_concurrency: 1}
  - {name: f16-other, provider: local, model: smol, local: {variant: F16, n_threads: 2}, max_concurrency: 1}
  - {name: q2_k, provider: local, model: smol, local: {variant: Q2_K}, max_concurrency: 1}
  - name: f16-sysprompt
    provider: proxy
    model: smol
    proxy: {target: f16, inject_system: "You are a pirate. Answer in pirate speak."}
    max_concurrency: 1
"""


def _audited(text, db):
    """Run the audit of a lineup as `bakeoff audit` does: (lineup, store, run id)."""
    lineup = parse_lineup(text)
    store = Store(db)
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    out = asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    assert out.status == "complete"
    return lineup, store, run_id


def _stated(verdicts):
    """The verdicts as the store keeps them (JSON)."""
    return {k: v.to_json() for k, v in verdicts.items()}


def test_audit_verdicts_and_rerun_from_stored_samples(tmp_path):
    lineup, store, run_id = _audited(LINEUP, tmp_path / "a.db")
    v = _stated(store.verdicts(run_id))
    assert v["q2_k"]["verdict"] == "different"
    assert v["q2_k"]["p_value"] < 0.05
    assert v["f16-sysprompt"]["verdict"] == "different"
    assert any("prompt is" in f for f in v["f16-sysprompt"]["behaviour"]["flags"])
    # same weights on another thread count: never "different"
    assert v["f16-other"]["verdict"] != "different"
    assert v["f16-other"]["tests"]["greedy"]["differ"] <= 1
    sampled = v["q2_k"]["tests"]["sampled"]
    assert sampled["mean_logprob_candidate"] is not None and 0 <= sampled["mmd_p_value"] <= 1
    # the log-probabilities each endpoint reports for its samples, against the reference scorer's:
    # the same weights report the same numbers (to llama.cpp's numerics), 2-bit weights do not
    same = v["f16-other"]["tests"]["logprobs"]
    assert same["n"] >= 8 and same["mean_gap_candidate"] < 0.01
    q2 = v["q2_k"]["tests"]["logprobs"]
    assert q2["mean_gap_candidate"] > 20 * q2["mean_gap_reference"]

    # recomputed from the store, without a call: the same verdicts, number for number
    again = _stated(rerun_audit(store, run_id, lineup))
    assert json.loads(json.dumps(again)) == v
    s = summarize(store, run_id)
    fid = {e["name"]: e["fidelity"] for e in s["endpoints"]}
    assert fid["f16"] == {"verdict": "reference"}
    assert fid["q2_k"]["verdict"] == "different"

    # the CLI's rerun prints the same, and makes no call (no server is running now)
    r = bakeoff("audit", "--rerun", run_id, "--db", str(tmp_path / "a.db"), "--json")
    assert r.returncode == 0, r.stderr
    assert "identical to the run's own analysis" in r.stderr
    assert json.loads(r.stdout)["verdicts"] == v


GREEDY_LINEUP = """
reference: f16
run: {suites: []}
audit: {regimes: [greedy], budget: 20, batch: 10, max_tokens: 32}
endpoints:
  - {name: f16, provider: local, model: smol, local: {variant: F16, n_threads: 1}, max_concurrency: 1}
  - {name: q8_0, provider: local, model: smol, local: {variant: Q8_0, n_threads: 1}, max_concurrency: 1}
  - name: f16-torch
    provider: local
    model: smol
    local: {variant: F16, engine: transformers}
    max_concurrency: 4
"""


def test_a_greedy_audit_reruns_identically_with_no_model_at_hand(tmp_path, monkeypatch):
    """The default regime (greedy: the margins come from the reference scorer), the PyTorch
    engine among the candidates: `--rerun` gives the same verdicts, p-values and bounds, from
    the scorer's stored answers — with no GGUF to load (the model cache emptied)."""
    db = tmp_path / "g.db"
    _, store, run_id = _audited(GREEDY_LINEUP, db)
    v = _stated(store.verdicts(run_id))
    assert set(v) == {"q8_0", "f16-torch"} and store.scorer_answers(run_id, "reference")
    store.close()
    empty = tmp_path / "no-models"
    monkeypatch.setenv("BAKEOFF_CACHE_DIR", str(empty))
    r = bakeoff("audit", "--rerun", run_id, "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    assert "identical to the run's own analysis" in r.stderr and ", 0 computed" in r.stderr
    again = json.loads(r.stdout)["verdicts"]
    assert again == v
    for ep in v:
        g, h = again[ep]["tests"]["greedy"], v[ep]["tests"]["greedy"]
        assert (g["margin"], g["rate_upper_bound"], g["p_value"]) == (
            h["margin"],
            h["rate_upper_bound"],
            h["p_value"],
        )
    assert v["q8_0"]["tests"]["greedy"]["margin"] > 0  # scored: not the no-scorer margin 0
    assert not list(empty.rglob("*.gguf"))  # no model was made or loaded for the rerun


LR_LINEUP = """
reference: f16
run: {suites: []}
audit: {regimes: [sampled], budget: 20, batch: 20, max_tokens: 24, alternatives: [Q4_K_M], seed: 0}
endpoints:
  - {name: f16, provider: local, model: smol, local: {variant: F16, n_threads: 1}, max_concurrency: 1}
  - name: f16-other
    provider: local
    model: smol
    local: {variant: F16, n_threads: 1, n_batch: 8}
    max_concurrency: 1
  - {name: q4_k_m, provider: local, model: smol, local: {variant: Q4_K_M, n_threads: 1}, max_concurrency: 1}
"""


def test_likelihood_ratio_toward_a_suspected_quantization(tmp_path):
    """4-bit weights are near invisible to the reference's log-probability of sampled text, but
    their samples are likelier under the 4-bit model than the reference's own samples are."""
    lineup, store, run_id = _audited(LR_LINEUP, tmp_path / "lr.db")
    # every sampled call asked for the model's own distribution, cut at the nucleus audit.top_p
    # and nothing else (llama.cpp's server otherwise applies top_k 40, min_p 0.05, repeat penalty)
    body = json.loads(
        store.db.execute(
            "SELECT request_json FROM calls WHERE run_id = ? AND suite = 'fidelity.sampled'",
            (run_id,),
        ).fetchone()[0]
    )["body"]
    assert body["top_p"] == 0.95 and body["top_k"] == 0 and body["min_p"] == 0.0
    assert body["repeat_penalty"] == 1.0 and body["temperature"] == 1.0
    v = _stated(store.verdicts(run_id))
    q4 = v["q4_k_m"]["tests"]["lr:Q4_K_M"]
    assert q4["n"] >= 10
    assert q4["mean_llr_candidate"] > q4["mean_llr_reference"] + 0.05
    assert q4["sign_flip_p_value"] < 0.01
    same = v["f16-other"]["tests"]["lr:Q4_K_M"]
    assert abs(same["mean_llr_candidate"] - same["mean_llr_reference"]) < 0.05
    assert v["f16-other"]["verdict"] != "different"
    # the rerun rescored every sample under both models: the same verdicts
    again = _stated(rerun_audit(store, run_id, lineup))
    assert {k: x["verdict"] for k, x in again.items()} == {k: x["verdict"] for k, x in v.items()}
    assert np.isclose(again["q4_k_m"]["p_value"], v["q4_k_m"]["p_value"])
