"""The audit against an honest provider on another engine: the same F16 weights served by PyTorch
(bakeoff's transformers server) audited against the llama.cpp reference, greedy and sampled — and
the same server with a repetition penalty the audit cannot switch off."""

from __future__ import annotations

import asyncio

import pytest

from bakeoff.audit import run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute
from bakeoff.store import Store

LINEUP = """
reference: f16
run: {suites: []}
audit: {regimes: [greedy, sampled], budget: 16, batch: 8, max_tokens: 32, alternatives: [], seed: 0}
endpoints:
  - {name: f16, provider: local, model: smol, local: {variant: F16, n_threads: 1}, max_concurrency: 1}
  - name: f16-torch
    provider: local
    model: smol
    local: {variant: F16, engine: transformers, n_threads: 1}
    max_concurrency: 4
  - name: f16-torch-penalty
    provider: local
    model: smol
    local: {variant: F16, engine: transformers, n_threads: 1, forced_repetition_penalty: 1.3}
    max_concurrency: 4
"""


@pytest.mark.slow
def test_another_engine_is_never_different_and_a_stuck_sampler_is_flagged(tmp_path):
    lineup = parse_lineup(LINEUP)
    store = Store(tmp_path / "a.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    out = asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    assert out.status == "complete"
    v = store.verdicts(run_id)

    torch = v["f16-torch"]
    assert torch.verdict != "different", torch.why
    g = torch.tests["greedy"]
    # the engines' greedy outputs may part, but only where the reference hesitated
    assert g.confident_differ <= 1, g.examples
    assert torch.tests["sampled"].p_value > 0.05
    assert not any(f.startswith("sampler") for f in torch.behaviour.flags)

    stuck = v["f16-torch-penalty"]
    assert stuck.verdict != "different", stuck.why
    assert any(f.startswith("sampler") for f in stuck.behaviour.flags), stuck
    assert "sampler" in stuck.claim
