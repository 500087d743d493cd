"""The runner end to end over fake providers on loopback, in-process, with a real SQLite file."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import orjson

from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from bakeoff.suites import Arith


def perfect_script(n: int, seed: int = 0) -> dict[str, str]:
    return {
        it.messages[0]["content"]: f"The answer is {it.target}."
        for it in Arith().items(seed=seed, n=n)
    }


def lineup_text(script_file: str, n: int) -> str:
    return f"""
reference: good
defaults: {{temperature: 0, max_tokens: 32}}
run: {{suites: [arith], limit: {n}}}
endpoints:
  - name: good
    provider: fake
    fake: {{mode: script, script_file: {script_file}}}
    price: {{input_per_m: 1.0, output_per_m: 2.0}}
  - name: wrong
    provider: fake
    fake: {{mode: fixed, reply: "-1"}}
  - name: flaky
    provider: fake
    max_concurrency: 3
    fake:
      mode: script
      script_file: {script_file}
      seed: 3
      faults: {{rate_limit: 0.15, server_error: 0.1, truncate: 0.1, reset: 0.05, malformed: 0.05,
               auth: 0.05, html: 0.05}}
    retry: {{max_retries: 1, backoff_base_s: 0.001}}
"""


def _recount(store: Store, run_id: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    passed_of: dict[str, int | None] = {}
    for s in store.scores(run_id):
        passed_of.setdefault(s["call_id"], s["passed"])  # the suite's primary score: its first
    for c in store.calls(run_id):
        ep, status, err, passed = (
            c["endpoint"],
            c["status"],
            c["error_class"],
            passed_of.get(c["id"]),
        )
        d = out.setdefault(ep, {"calls": 0, "ok": 0, "errors": Counter(), "correct": 0})
        d["calls"] += 1
        d["ok"] += status == "ok"
        if status != "ok":
            d["errors"][err] += 1
            assert passed is None, "an errored call must never carry a score"
        d["correct"] += bool(passed)
    return out


def test_three_endpoints_with_faults(tmp_path, db_target):
    n = 30
    script = tmp_path / "script.json"
    script.write_bytes(orjson.dumps(perfect_script(n)))
    lineup = parse_lineup(lineup_text(str(script), n))
    store = Store(db_target)
    run_id = create_run(store, lineup)
    outcome = asyncio.run(execute(store, run_id, RunOptions(use_cache=False)))
    assert outcome.status == "complete"
    s = summarize(store, run_id)
    recount = _recount(store, run_id)
    eps = {e["name"]: e for e in s["endpoints"]}

    for name, e in eps.items():
        r = recount[name]
        assert e["calls"] == r["calls"] == n, name  # every planned call is stored
        assert e["successes"] == r["ok"]
        assert e["errors"] == dict(r["errors"])
        assert e["suites"]["arith"]["correct"] == r["correct"]
        assert e["suites"]["arith"]["n"] == n  # failures stay in the denominator
        assert e["successes"] + sum(e["errors"].values()) == e["calls"]

    assert eps["good"]["suites"]["arith"]["score"] == 1.0
    assert eps["wrong"]["suites"]["arith"]["score"] == 0.0
    flaky = eps["flaky"]
    assert sum(flaky["errors"].values()) > 0, "the faulty endpoint should end some calls in errors"
    assert flaky["errors"].get("auth", 0) > 0
    # every success of the flaky endpoint is correct; no error is counted as correct
    assert flaky["suites"]["arith"]["correct"] == flaky["successes"]
    assert flaky["attempts"] > flaky["calls"]  # retries happened and are stored
    assert eps["good"]["cost_usd"] > 0 and eps["good"]["ttft_ms"]["p50"] is not None
    store.close()


def test_attempts_and_retry_decisions_are_stored(tmp_path):
    lineup = parse_lineup(
        """
run: {suites: [arith], limit: 4}
endpoints:
  - name: f
    provider: fake
    fake: {mode: echo, faults: {rate_limit: 1.0}}
    retry: {max_retries: 2, backoff_base_s: 0.001}
"""
    )
    store = Store(tmp_path / "b.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id))
    calls = store.calls(run_id)
    assert len(calls) == 4
    for c in calls:
        assert c["status"] == "error" and c["error_class"] == "rate_limited"
        att = store.attempts(c["id"])
        assert [a["decision"] for a in att] == ["retry", "retry", "give_up"]
        assert att[0]["decision_reason"] == "Retry-After honoured"
        assert att[0]["http_status"] == 429


def test_retries_recover_to_success(tmp_path):
    """A fault on the first attempt of each prompt only: every call ends ok after one retry."""
    from bakeoff.fake import FakeConfig, FakeServer

    async def go():
        server = FakeServer(
            FakeConfig(mode="echo", faults={"server_error": 1.0}, max_faults_per_prompt=1)
        )
        url = await server.start()
        lineup = parse_lineup(
            f"""
run: {{suites: [arith], limit: 6}}
endpoints:
  - name: f
    base_url: {url}
    retry: {{backoff_base_s: 0.001}}
"""
        )
        store = Store(tmp_path / "b.db")
        run_id = create_run(store, lineup)
        await execute(store, run_id)
        await server.stop()
        return store, run_id, server

    store, run_id, server = asyncio.run(go())
    calls = store.calls(run_id)
    assert all(c["status"] == "ok" and c["n_attempts"] == 2 for c in calls)
    assert len(server.log) == 12


def test_cache_answers_a_rerun_without_calls(tmp_path):
    lineup = parse_lineup(
        "run: {suites: [arith], limit: 5}\nendpoints:\n  - {name: f, provider: fake}\n"
    )
    store = Store(tmp_path / "b.db")
    r1 = create_run(store, lineup)
    asyncio.run(execute(store, r1, RunOptions(use_cache=True)))
    r2 = create_run(store, lineup)
    asyncio.run(execute(store, r2, RunOptions(use_cache=True)))
    s1, s2 = summarize(store, r1), summarize(store, r2)
    assert s2["endpoints"][0]["cached"] == 5 and s1["endpoints"][0]["cached"] == 0
    assert s2["endpoints"][0]["ttft_ms"]["p50"] is None  # cache hits are not latency samples
    r3 = create_run(store, lineup)
    asyncio.run(execute(store, r3, RunOptions(use_cache=False)))
    assert summarize(store, r3)["endpoints"][0]["cached"] == 0


def test_rate_limit_spaces_requests(tmp_path):
    lineup = parse_lineup(
        "run: {suites: [arith], limit: 6}\n"
        "endpoints:\n  - {name: f, provider: fake, max_concurrency: 6, rate_limit: {rpm: 600}}\n"
    )
    store = Store(tmp_path / "b.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions(use_cache=False)))
    starts = sorted(c["started_at"] for c in store.calls(run_id))
    # 600 rpm = one request every 100 ms: six requests span at least 0.5 s whatever the machine load
    assert starts[-1] - starts[0] >= 0.45


def test_a_long_reply_is_scored_off_the_loop_while_other_streams_move(tmp_path):
    """A suite whose scorer blocks for 1.5 s on replies over INLINE_CHARS: run in the loop it
    would freeze every other endpoint's stream for that long; off the loop (the scoring process:
    this suite, registered in this process only, is not found there and scores `scorer_error`,
    which is not what is measured) the other endpoint's token gaps stay near its 20 ms pace."""
    import time as _time

    import orjson

    import bakeoff
    from bakeoff.plugins import _suites, hookimpl, plugin_manager
    from bakeoff.runs._scoring import INLINE_CHARS as LARGE_OUTPUT_CHARS
    from bakeoff.suites import Arith

    class SlowScoring(Arith):
        name = "slow-scoring"

        def score(self, item, result):
            if len(result.text) > LARGE_OUTPUT_CHARS:
                _time.sleep(1.5)  # blocking: regexes over a huge reply
            return super().score(item, result)

    class Plugin:
        @hookimpl
        def register_suites(self, register):
            register(SlowScoring())

    pm = plugin_manager()
    plugin = Plugin()
    pm.register(plugin)
    _suites.cache_clear()
    try:
        lu = tmp_path / "l.yaml"
        lu.write_text(
            "run: {suites: [slow-scoring], limit: 8, probe: false}\n"
            "endpoints:\n"
            "  - {name: big, provider: fake, stream: false, max_concurrency: 2,"
            f"     fake: {{mode: fixed, reply: {'x' * 240_000}}}}}\n"  # one 240,000-character token
            "  - {name: steady, provider: fake, max_concurrency: 1,"
            "     fake: {mode: fixed, reply_tokens: 30, itl_ms: 20}}\n"
        )
        db = tmp_path / "b.db"
        summary = bakeoff.run(lu, db=db, report=False)
        assert summary.status == "complete"
        store = bakeoff.Store(db)
        gaps = []
        for c in store.calls(summary.run_id):
            if c["endpoint"] == "steady":
                chunks = orjson.loads(c["chunk_ms_json"])
                gaps += [b - a for a, b in itertools.pairwise(chunks)]
        big = [c for c in store.calls(summary.run_id) if c["endpoint"] == "big"]
        assert len(big) == 8 and all(len(c["output_text"]) > LARGE_OUTPUT_CHARS for c in big)
        assert len(gaps) >= 8 * 10
        assert max(gaps) < 750, max(gaps)  # a blocked loop shows a gap of >= 1,500 ms
    finally:
        pm.unregister(plugin)
        _suites.cache_clear()


def test_the_config_hash_ignores_fields_left_at_their_defaults():
    """An interrupted run is found again by its lineup's hash: a field a newer version adds with
    a default (or a default written out) must not change it; a real change must."""
    from bakeoff.lineups import parse_lineup
    from bakeoff.runs import config_hash

    bare = parse_lineup("endpoints:\n  - {name: a, provider: fake}\n")
    spelled = parse_lineup(
        "run: {probe: false, cache: false, repeats: 1, list_prices: true}\n"
        "endpoints:\n  - {name: a, provider: fake, max_concurrency: 4, claims: null}\n"
    )
    assert config_hash(bare) == config_hash(spelled)
    other = parse_lineup("run: {repeats: 2}\nendpoints:\n  - {name: a, provider: fake}\n")
    assert config_hash(other) != config_hash(bare)
