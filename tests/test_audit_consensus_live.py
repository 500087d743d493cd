"""No reference at all (`audit.reference: consensus`), live: the local llama.cpp servers addressed
as if they were hosted (`provider: openai` + `base_url`, no GGUF, no scorer, no `reference:`), audited
by `bakeoff audit`; the group the audit assumes, its verdicts, and `--rerun` from the store."""

from __future__ import annotations

import json

from bakeoff.store import Store
from conftest import bakeoff

HOSTED = {"f16": "f16", "f16-2t": "f16b", "q2_k": "q2_k"}
"""Lineup name → the session's llama.cpp server (`servers` in conftest.py)."""


def lineup(servers, audit: str) -> str:
    eps = "".join(
        f"  - {{name: {n}, provider: openai, base_url: '{servers[s].url}', model: smol, "
        "max_concurrency: 1, neutral_params: {top_k: 0, min_p: 0.0, repeat_penalty: 1.0}}\n"
        for n, s in HOSTED.items()
    )
    return f"run: {{suites: []}}\naudit: {audit}\nendpoints:\n{eps}"


def test_no_reference_the_f16s_are_the_group_and_q2_k_is_different(servers, tmp_path):
    """Seeded, two rounds of 10 greedy prompts each asked twice of every endpoint with top-5
    log-probabilities: the F16 twins (one and two threads) agree, 2 of 3 is a majority, so they are
    assumed to serve the reference and Q2_K is different from it — every verdict saying so in the
    table, the JSON and the report. `--rerun` from the stored calls: the same verdicts."""
    cfg, db = tmp_path / "consensus.yaml", tmp_path / "c.db"
    audit = (
        "{reference: consensus, regimes: [greedy], budget: 20, batch: 10, max_tokens: 32, seed: 5}"
    )
    cfg.write_text(lineup(servers, audit))
    r = bakeoff("audit", "-c", str(cfg), "--db", str(db), "--json", "-q")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    v = out["verdicts"]
    for name, x in v.items():  # shown with -s: the figures docs/FIDELITY.md quotes
        print(name, x["claim"], x["assumed_reference"]["rates"])
    assert set(v) == {"f16-2t", "q2_k"}  # f16, the group's first member, is the reference
    assert v["q2_k"]["verdict"] == "different"
    assert v["f16-2t"]["verdict"] != "different"
    for x in v.values():
        assumed = x["assumed_reference"]
        assert assumed["group"] == ["f16", "f16-2t"] and assumed["representative"] == "f16"
        assert assumed["text"].startswith(
            "reference assumed: the largest agreeing group {f16, f16-2t} of 3"
        )
        assert x["claim"].endswith("reference assumed") and x["why"].startswith(assumed["text"])
        assert x["margin_source"] == "top_logprobs"
    assert "reference assumed: the largest agreeing group {f16, f16-2t} of 3" in r.stderr
    # every endpoint answered every prompt twice, asking for top_logprobs
    store = Store(db)
    calls = store.calls(out["run_id"])
    asked = {
        (c["endpoint"], c["repeat"], "top_logprobs" in json.loads(c["request_json"])["body"])
        for c in calls
    }
    assert asked == {(n, k, True) for n in HOSTED for k in (0, 1)}
    assert len(calls) == 3 * 2 * 20
    again = bakeoff("audit", "--rerun", out["run_id"], "--db", str(db), "--json", "-q")
    assert again.returncode == 0, again.stderr
    assert "identical to the run's own analysis" in again.stderr
    assert json.loads(again.stdout)["verdicts"] == v
    # the report's audit page (the same views render it) says it too
    from bakeoff.ui import Views

    page = Views(store, report=True).page(f"/run/{out['run_id']}/audit")
    store.close()
    assert "reference assumed: the largest agreeing group {f16, f16-2t} of 3" in page.html


def test_no_reference_and_no_consensus_is_refused(servers, tmp_path):
    cfg = tmp_path / "none.yaml"
    cfg.write_text(lineup(servers, "{regimes: [greedy], budget: 2}"))
    r = bakeoff("audit", "-c", str(cfg), "--db", str(tmp_path / "n.db"), "-q")
    assert r.returncode != 0 and "audit.reference: consensus" in r.stderr
