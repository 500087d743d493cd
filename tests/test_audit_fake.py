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
audit: {regimes: [greedy], budget: 30, batch: 5}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
  - {name: other, provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}
  - {name: flaky, provider: fake, fake: {mode: echo, faults: {auth: 0.5}, seed: 2}}
"""


def _run(tmp_path, text=LINEUP):
    lineup = parse_lineup(text)
    store = Store(tmp_path / "a.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    return store, run_id, lineup


def test_same_different_and_early_stop(tmp_path):
    store, run_id, lineup = _run(tmp_path)
    v = store.verdicts(run_id)
    assert v["other"]["verdict"] == "different"
    assert v["other"]["calls"] < lineup.audit.budget  # decided early, stopped querying
    assert v["other"]["tests"]["greedy"]["rejected_at"] <= 15
    assert v["twin"]["verdict"] == "same"  # budget spent, powered, nothing different
    assert v["twin"]["calls"] == lineup.audit.budget
    assert v["twin"]["tests"]["greedy"]["power_at_stated_effect"] >= 0.8
    # failed calls are counted as errors, and left out of the evidence, never as agreement
    fl = v["flaky"]
    assert fl["errors"] > 0 and fl["tests"]["greedy"]["n"] == fl["calls"] - fl["errors"]
    assert fl["verdict"] in ("inconclusive", "same")
    s = summarize(store, run_id)
    by = {e["name"]: e for e in s["endpoints"]}
    assert by["other"]["fidelity"]["verdict"] == "different"
    assert by["ref"]["calls"] == 3  # suite calls; audit calls are reported under fidelity
    assert rerun_audit(store, run_id, lineup)["twin"]["verdict"] == "same"


def test_small_budget_is_inconclusive_never_same(tmp_path):
    store, run_id, _ = _run(tmp_path, LINEUP.replace("budget: 30", "budget: 6"))
    v = store.verdicts(run_id)
    assert v["twin"]["verdict"] == "inconclusive"
    assert "too low" in v["twin"]["why"]


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
    twin, talker = v["twin"]["behaviour"], v["talker"]["behaviour"]
    assert twin["suites"]["tool_call_f1"] == 1.0
    assert twin["suites"]["tool_args_valid_rate"] == 1.0
    assert not any("tool" in f for f in twin["flags"])
    assert talker["suites"]["tool_call_f1"] < 0.8
    assert any("F1" in f for f in talker["flags"])


def test_an_unknown_alternative_is_refused_before_any_call(tmp_path):
    text = LINEUP.replace("batch: 5}", "batch: 5, alternatives: [Q5_X]}")
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
        text = LINEUP.replace("audit: {regimes: [greedy], budget: 30, batch: 5}", audit)
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
