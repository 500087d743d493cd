"""Every built-in suite end to end against the fake provider: scripted perfect answers score 100%,
scripted wrong answers score 0% — the scorers accept correct answers and reject wrong ones, through
the real wire client, runner and store (tool calls streamed as deltas, code run in the sandbox)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from bakeoff.lineups import parse_lineup
from bakeoff.plugins import suites as all_suites
from bakeoff.runs import RunOptions, create_run, execute, suite_items, summarize
from bakeoff.store import Store
from bakeoff.suites import EVAL_SUITES, Reply

SUITES = list(EVAL_SUITES)


def _last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def _script(lineup_yaml: str, which: str) -> dict[str, object]:
    lineup = parse_lineup(lineup_yaml, "probe.yaml")
    script: dict[str, object] = {}
    for name in SUITES:
        suite = all_suites()[name]
        for it in suite_items(lineup, name):
            if which == "perfect":
                reply: Reply = suite.reference_reply(it)
            else:
                wrong = getattr(suite, "wrong_reply", None)
                reply = wrong(it) if wrong else Reply(content="I don't know.")
            key = _last_user(it.messages)
            assert key not in script, f"two items share a prompt: {key[:80]}"
            script[key] = reply.model_dump()
    return script


def _lineup(tmp: Path, stream: bool) -> str:
    base = f"""
reference: perfect
defaults: {{temperature: 0}}
run: {{suites: {orjson.dumps(SUITES).decode()}, limit: 12}}
endpoints:
  - name: perfect
    provider: fake
    stream: {str(stream).lower()}
    fake: {{mode: script, script_file: {tmp}/perfect.json}}
  - name: wrong
    provider: fake
    stream: {str(stream).lower()}
    fake: {{mode: script, script_file: {tmp}/wrong.json}}
"""
    for which in ("perfect", "wrong"):
        (tmp / f"{which}.json").write_bytes(orjson.dumps(_script(base, which)))
    return base


@pytest.mark.parametrize("stream", [True, False])
def test_perfect_scores_one_wrong_scores_zero(tmp_path: Path, stream: bool) -> None:
    lineup = parse_lineup(_lineup(tmp_path, stream), "t.yaml")
    store = Store(tmp_path / "runs.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False)))
    s = summarize(store, run_id)
    eps = {e["name"]: e for e in s["endpoints"]}
    for name in SUITES:
        good, bad = eps["perfect"]["suites"][name], eps["wrong"]["suites"][name]
        assert good["n"] == bad["n"] >= 9, name
        assert good["score"] == 1.0, (name, good)
        assert bad["score"] == 0.0, (name, bad)
        assert good["errors"] == bad["errors"] == 0
        # every tier is represented and perfect on it
        assert all(t["score"] == 1.0 for t in good["tiers"].values()), (name, good["tiers"])
        vs = bad["vs_reference"]
        assert vs["n_pairs"] == bad["n"] and vs["delta"] == -1.0
        assert vs["significant"], (name, vs)
    tools = eps["wrong"]["suites"]["tools"]["vs_reference"]
    assert tools["tool_call_f1"] == 0.0
    lc = eps["perfect"]["suites"]["long-context"]
    assert lc["effective_context"] == max(int(k) for k in lc["by_length"])
    assert lc["truncation_suspected"] == 0
    assert eps["wrong"]["suites"]["long-context"]["effective_context"] == 0


def test_repeats_give_unbiased_pass_at_k(tmp_path: Path) -> None:
    """Five samples per item from an endpoint that answers right but fails 40% of calls: a failed
    call is not a sample (not a wrong answer), so pass@k over the answered samples is 1, and the
    score counting failures as wrong is the share of calls that answered."""
    from bakeoff.stats import pass_at_k
    from bakeoff.suites import Arith

    items = Arith().items(seed=0, n=6)
    (tmp_path / "s.json").write_bytes(
        orjson.dumps({it.messages[0]["content"]: str(it.target) for it in items})
    )
    lineup = parse_lineup(
        f"""
run: {{suites: [arith], limit: 6, repeats: 5, probe: false, max_failed_share: 0.6}}
endpoints:
  - name: flaky
    provider: fake
    retry: {{max_retries: 0}}
    fake: {{mode: script, script_file: {tmp_path}/s.json, faults: {{server_error: 0.4}}, seed: 1}}
""",
        "t.yaml",
    )
    store = Store(tmp_path / "runs.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False)))
    s = summarize(store, run_id)["endpoints"][0]["suites"]["arith"]
    per_item: dict[str, list[bool]] = {}
    for c in store.calls(run_id):
        per_item.setdefault(c["item_id"], []).append(c["status"] == "ok")
    assert s["n"] == 30 and 0 < s["errors"] < 30 and s["answered"] == 30 - s["errors"]
    k = min(sum(v) for v in per_item.values())  # the fewest answered samples of an item
    want = sum(pass_at_k(sum(v), sum(v), 1) for v in per_item.values()) / len(per_item)
    assert s["pass_at_k"]["1"] == round(want, 4) == 1.0 and set(s["pass_at_k"]) == {"1", str(k)}
    assert s["score"] == 1.0
    assert s["score_failures_as_wrong"] == round(s["answered"] / 30, 4)
