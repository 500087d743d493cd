"""A hosted reference and no scorer: the local llama.cpp servers addressed as if they were hosted
(`provider: openai` + `base_url`, no GGUF, no `scorer`), audited by `bakeoff audit`, the greedy
margins from the reference's own `top_logprobs` (`audit/_topk.py`)."""

from __future__ import annotations

import json

import pytest

from bakeoff.store import Store
from conftest import bakeoff

HOSTED = {"f16": "f16", "f16-2t": "f16b", "q2_k": "q2_k"}
"""Lineup name → the session's llama.cpp server (`servers` in conftest.py)."""


@pytest.fixture
def hosted(servers):
    """The servers' base URLs by lineup name."""
    return {name: servers[s].url for name, s in HOSTED.items()}


def lineup(urls: dict[str, str], audit: str) -> str:
    """Every server as a hosted endpoint (`neutral_params`: the fields a user would give a host
    whose sampler defaults are llama.cpp's), and a system-prompt proxy in front of the F16 twin
    (the reference's server serves the reference alone)."""
    eps = "".join(
        f"  - {{name: {n}, provider: openai, base_url: '{u}', model: smol, max_concurrency: 1,"
        " neutral_params: {top_k: 0, min_p: 0.0, repeat_penalty: 1.0}}\n"
        for n, u in urls.items()
    )
    return f"""reference: f16
run: {{suites: []}}
audit: {audit}
endpoints:
{eps}  - name: f16-sysprompt
    provider: proxy
    model: smol
    proxy: {{target: f16-2t, inject_system: "You are a pirate. Answer in pirate speak."}}
    max_concurrency: 1
"""


def test_a_hosted_reference_with_no_scorer(hosted, tmp_path):
    """Seeded, two rounds of 10: the quantization and the system prompt are different, the F16 twin on another
    thread count never; the margins came from the reference's top-5, asked of its greedy calls
    only; `--rerun` gives the same verdicts with no call, and the in-process GGUF scorer on the
    same calls the same verdicts. (F32 and PyTorch, which part from F16 only at near-ties, are in
    docs/FIDELITY.md's measurement; the near-tie rule itself: tests/test_audit_topk.py.)"""
    cfg, db = tmp_path / "hosted.yaml", tmp_path / "h.db"
    cfg.write_text(
        lineup(hosted, "{regimes: [greedy], budget: 20, batch: 10, max_tokens: 32, seed: 5}")
    )
    r = bakeoff("audit", "-c", str(cfg), "--db", str(db), "--json", "-q")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    v = out["verdicts"]
    assert v["q2_k"]["verdict"] == "different"
    assert v["f16-sysprompt"]["verdict"] == "different"
    assert v["f16-2t"]["verdict"] != "different"
    for name, x in v.items():
        g = x["tests"]["greedy"]
        assert x["margin_source"] == "top_logprobs", name
        assert g["top_k"] == 5 and g["margin"] == 0.1 and not g.get("left_out"), name
    # the reference's greedy calls asked for top_logprobs; the candidates' calls did not
    store = Store(db)
    asked = {
        (c["endpoint"], "top_logprobs" in json.loads(c["request_json"])["body"])
        for c in store.calls(out["run_id"])
    }
    store.close()
    assert asked == {("f16", True), *((n, False) for n in v)}
    again = bakeoff("audit", "--rerun", out["run_id"], "--db", str(db), "--json", "-q")
    assert again.returncode == 0, again.stderr
    assert "identical to the run's own analysis" in again.stderr
    assert json.loads(again.stdout)["verdicts"] == v
    # the same calls judged by the in-process GGUF scorer: the same verdicts
    gguf = ["--set", "scorer=local", "--set", "reference_gguf=F16", "--set", "alternatives=[]"]
    scored = bakeoff("audit", "--rerun", out["run_id"], *gguf, "--db", str(db), "--json", "-q")
    assert scored.returncode == 0, scored.stderr
    by_gguf = json.loads(scored.stdout)["verdicts"]
    assert {n: x["verdict"] for n, x in by_gguf.items()} == {n: x["verdict"] for n, x in v.items()}
    assert {x["margin_source"] for x in by_gguf.values()} == {"gguf"}
    # ... whose stored answers are not replayed into the run's own analysis, judged without them
    again = bakeoff("audit", "--rerun", out["run_id"], "--db", str(db), "--json", "-q")
    assert "identical to the run's own analysis" in again.stderr, again.stderr
    bundle = tmp_path / "audit.tar.gz"
    assert (
        bakeoff("audit", "bundle", out["run_id"], "-o", str(bundle), "--db", str(db)).returncode
        == 0
    )
    checked = bakeoff("audit", "verify", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr
