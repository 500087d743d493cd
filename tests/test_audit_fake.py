"""The audit's decisions over fake providers: fast, exact, no model needed."""

from __future__ import annotations

import asyncio
import json

from bakeoff.audit import rerun_audit, run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from conftest import bakeoff

LINEUP = """
reference: ref
run: {suites: [arith], limit: 3}
audit: {regimes: [greedy], batch: 10}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
  - {name: other, provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}
  - {name: flaky, provider: fake, fake: {mode: echo, faults: {auth: 0.5}, seed: 2}}
"""


def _run(tmp_path, text=LINEUP, db=None):
    lineup = parse_lineup(text)
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = Store(db or tmp_path / "a.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    return store, run_id, lineup


def test_same_different_and_early_stop(tmp_path, db_target):
    store, run_id, lineup = _run(tmp_path, db=db_target)
    v = store.verdicts(run_id)
    assert v["other"].verdict == "different"
    assert v["other"].calls < lineup.audit.budget  # decided early, stopped querying
    assert v["other"].tests["greedy"].rejected_at <= 10
    assert v["other"].claim == "different (p=0.013, 10/10)"
    # "same" is an equivalence bound on the excess rate: 0 divergences in 343 calls bound it below
    # 1%, the audit stops there (the bound holds at any stopping time), and the claim says which
    # routes it rules out: bound / 0.22 for a Q8_0-like substitute
    twin = v["twin"]
    assert twin.verdict == "same"
    assert twin.claim == "same ≤1% (0/350; routes ≥4.5% to Q8_0-like ruled out)"
    assert twin.calls == 350 < lineup.audit.budget
    g = twin.tests["greedy"]
    assert g.same_at == 343 and g.rate_upper_bound < 0.01
    assert twin.rules_out[0].route_share == round(g.rate_upper_bound / 0.22, 4)
    assert "would have been seen" in twin.why
    assert g.power_is_exact and g.power[1].to_json() == {
        "effect": 0.1,
        "different": 1.0,
        "same": 0.0,
        "expected_calls": 91.4,
    }
    # failed calls are counted as errors, and left out of the evidence, never as agreement
    fl = v["flaky"]
    assert fl.errors > 0 and fl.tests["greedy"].n == fl.calls - fl.errors
    assert fl.verdict in ("inconclusive", "same")
    s = summarize(store, run_id)
    by = {e["name"]: e for e in s["endpoints"]}
    assert by["other"]["fidelity"]["verdict"] == "different"
    assert by["twin"]["fidelity"]["claim"].startswith("same ≤1% (0/350;")
    assert by["ref"]["calls"] == 3  # suite calls; audit calls are reported under fidelity
    assert rerun_audit(store, run_id, lineup)["twin"].verdict == "same"
    store.close()


def test_small_budget_is_inconclusive_never_same(tmp_path):
    store, run_id, _ = _run(tmp_path, LINEUP.replace("batch: 10}", "budget: 30, batch: 10}", 1))
    v = store.verdicts(run_id)
    assert v["twin"].verdict == "inconclusive"
    assert v["twin"].claim == "inconclusive (0/30, ≤11%)"
    assert "'same' needs 343 greedy calls" in v["twin"].why
    assert "power 0.00 / 0.01 / 0.49 to see 5% / 10% / 25% of outputs changed" in v["twin"].why


ROUTED = """
reference: ref
run: {{suites: []}}
audit: {{regimes: [greedy], seed: {seed}}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: echo}}}}
  - {{name: twin, provider: fake, fake: {{mode: echo}}}}
  - {{name: other, provider: fake, fake: {{mode: fixed, reply: "Something else entirely."}}}}
  - name: route10
    provider: proxy
    proxy: {{target: ref, route_fraction: 0.1, route_to: other, seed: {seed}}}
  - name: route20
    provider: proxy
    proxy: {{target: ref, route_fraction: 0.2, route_to: other, seed: {seed}}}
"""


def test_routed_endpoints_are_never_same_and_a_twin_never_different(tmp_path):
    """10 seeded audits at the default budget and settings: an endpoint that answers 10% or 20% of
    requests from another model is never called "same" (the old rule — "same" when the greedy test
    did not reject — said so in 10 of 12 audits at 20%), and a twin is never "different". (The
    rates at routes to a substitute that changes 22% of outputs: tests/test_audit_sim.py.)"""
    seen: dict[str, list[str]] = {"twin": [], "route10": [], "route20": []}
    for seed in range(10):
        store, run_id, _ = _run(tmp_path / str(seed), ROUTED.format(seed=seed))
        v = store.verdicts(run_id)
        for name in seen:
            seen[name].append(v[name].verdict)
        assert v["other"].verdict == "different"
    assert "same" not in seen["route10"] and "same" not in seen["route20"], seen
    assert "different" not in seen["twin"] and seen["twin"].count("same") == 10, seen
    # and they are not let off either: both routes change 10% and 20% of outputs, "different"
    # within 400 calls with probability 1.000 by the exact power of the rule (_power.py)
    assert seen["route10"].count("different") == seen["route20"].count("different") == 10, seen


def test_suite_behaviour_checks_tool_calls_against_the_reference(tmp_path):
    """With the tools suite in the run, the audit's behaviour compares each endpoint's tool calls with
    the reference's: when it calls a tool (F1) and whether its arguments fit the tool's schema."""
    import orjson

    from bakeoff.plugins import suites as all_suites
    from bakeoff.runs import suite_items

    head = """
reference: ref
defaults: {temperature: 0}
run: {suites: [tools], limit: 10}
audit: {regimes: [greedy], budget: 6, batch: 6}
endpoints:
"""
    suite = all_suites()["tools"]
    probe = parse_lineup(head + "  - {name: ref, provider: fake}\n")
    script = {
        it.messages[-1]["content"]: suite.reference_reply(it).model_dump()
        for it in suite_items(probe, "tools")
    }
    (tmp_path / "ref.json").write_bytes(orjson.dumps(script))
    text = (
        head
        + f"""
  - {{name: ref, provider: fake, fake: {{mode: script, script_file: {tmp_path}/ref.json}}}}
  - {{name: twin, provider: fake, fake: {{mode: script, script_file: {tmp_path}/ref.json}}}}
  - {{name: talker, provider: fake, fake: {{mode: fixed, reply: "I would rather explain it in words."}}}}
"""
    )
    store, run_id, _ = _run(tmp_path, text)
    v = store.verdicts(run_id)
    twin, talker = v["twin"].behaviour, v["talker"].behaviour
    assert twin.suites.tool_call_f1 == 1.0
    assert twin.suites.tool_args_valid_rate == 1.0
    assert not any("tool" in f for f in twin.flags)
    assert talker.suites.tool_call_f1 < 0.8
    assert any("F1" in f for f in talker.flags)


def test_an_unknown_alternative_is_refused_before_any_call(tmp_path):
    text = LINEUP.replace("batch: 10}", "batch: 10, alternatives: [Q5_X]}")
    path = tmp_path / "lineup.yaml"
    path.write_text(text)
    r = bakeoff("audit", "-c", str(path), "--db", str(tmp_path / "a.db"))
    assert r.returncode != 0
    assert "audit.alternatives: 'Q5_X' is neither" in r.stderr and "Traceback" not in r.stderr
    store = Store(tmp_path / "a.db")
    assert (
        store.db.execute("SELECT COUNT(*) FROM calls WHERE suite LIKE 'fidelity.%'").fetchone()[0]
        == 0
    )


def test_sampled_calls_send_the_audit_sampling_and_nothing_else(tmp_path):
    """T=1 with the nucleus `audit.top_p` (0.95 unless set) and the user's `sampled_params` for an
    engine bakeoff does not start; llama.cpp's own fields only go to servers bakeoff starts."""

    def bodies(audit: str) -> list[dict]:
        text = LINEUP.replace("audit: {regimes: [greedy], batch: 10}", audit)
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        store, run_id, _ = _run(d, text)
        rows = store.db.execute(
            "SELECT request_json FROM calls WHERE run_id = ? AND suite = 'fidelity.sampled'",
            (run_id,),
        ).fetchall()
        return [json.loads(r[0])["body"] for r in rows]

    default = bodies("audit: {regimes: [sampled], budget: 4, batch: 4, scorer: none}")
    assert default and all(b["temperature"] == 1.0 and b["top_p"] == 0.95 for b in default)
    assert not any("top_k" in b or "min_p" in b for b in default)
    full = bodies(
        "audit: {regimes: [sampled], budget: 4, batch: 4, scorer: none, top_p: 1,"
        " sampled_params: {top_k: -1}}"
    )
    assert full and all(b["top_p"] == 1.0 and b["top_k"] == -1 for b in full)
    # a seed per call: the endpoints' samples are independent draws
    assert len({b["seed"] for b in full}) == len(full)
