"""No designated reference (`audit.reference: consensus`) over fake providers: the audit's calls,
the group it assumes, its verdicts, the summary, `--rerun`, and a bundle verified from itself.
Fast: no model. (The margins: none — the fake returns no log-probabilities — so every textual
divergence counts, which identical echoes do not make.)"""

from __future__ import annotations

import asyncio

from bakeoff.audit import rerun_audit, run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from conftest import bakeoff

ECHO = "{provider: fake, fake: {mode: echo}}"
ELSE = '{provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}'


def _lineup(endpoints: dict[str, str], budget: int = 30) -> str:
    eps = "".join(f"  - {{name: {n}, {spec[1:]}\n" for n, spec in endpoints.items())
    audit = f"{{reference: consensus, regimes: [greedy], budget: {budget}, batch: 10}}"
    return f"run: {{suites: []}}\naudit: {audit}\nendpoints:\n{eps}"


def _run(tmp_path, text: str):
    lineup = parse_lineup(text)
    store = Store(tmp_path / "a.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    return store, run_id, lineup


def test_an_agreeing_majority_is_assumed_and_the_outlier_is_different(tmp_path):
    store, run_id, lineup = _run(tmp_path, _lineup({"a": ECHO, "b": ECHO, "c": ECHO, "x": ELSE}))
    v = store.verdicts(run_id)
    assert set(v) == {"b", "c", "x"}  # a, the group's first member, stands for the reference
    assert v["x"].verdict == "different" and v["b"].verdict == "inconclusive"
    text = "reference assumed: the largest agreeing group {a, b, c} of 4, represented by a"
    for x in v.values():
        assert x.assumed_reference is not None and x.assumed_reference.text.startswith(text)
        assert (x.claim or "").endswith(", reference assumed") and (x.why or "").startswith(text)
    # every endpoint answered every prompt twice (a reference's calls), all to the budget
    calls = store.calls(run_id)
    assert {(c["endpoint"], c["repeat"]) for c in calls} == {(n, k) for n in "abcx" for k in (0, 1)}
    assert len(calls) == 4 * 2 * 30
    s = summarize(store, run_id)
    by = {e["name"]: e for e in s["endpoints"]}
    assert by["x"]["fidelity"]["claim"].endswith("reference assumed")
    # the member that stood for the reference is shown as it, assumed, with the assumption
    assert by["a"]["fidelity"]["verdict"] == "reference"
    assert by["a"]["fidelity"]["claim"] == "reference (assumed)"
    assert by["a"]["fidelity"]["why"].startswith(text)
    assert rerun_audit(store, run_id, lineup) == v
    store.close()
    bundle = tmp_path / "audit.tar.gz"
    db = str(tmp_path / "a.db")
    made = bakeoff("audit", "bundle", run_id, "-o", str(bundle), "--db", db)
    assert made.returncode == 0, made.stdout + made.stderr
    checked = bakeoff("audit", "verify", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_dishonest_majority_is_taken_and_every_verdict_says_so(tmp_path):
    """Three providers answering the same wrong text against two echoing the prompt: the answers
    alone cannot say which is the model; the majority is taken, openly."""
    eps = {"h1": ECHO, "h2": ECHO, "s1": ELSE, "s2": ELSE, "s3": ELSE}
    store, run_id, _ = _run(tmp_path, _lineup(eps, budget=20))
    v = store.verdicts(run_id)
    assert v["h1"].verdict == v["h2"].verdict == "different"
    for x in v.values():
        assert x.assumed_reference is not None
        assert x.assumed_reference.group == ["s1", "s2", "s3"]
        assert "reference assumed: the largest agreeing group {s1, s2, s3} of 5" in (x.why or "")
    store.close()


def test_two_against_two_cannot_tell(tmp_path):
    eps = {"h1": ECHO, "h2": ECHO, "s1": ELSE, "s2": ELSE}
    store, run_id, lineup = _run(tmp_path, _lineup(eps, budget=20))
    v = store.verdicts(run_id)
    assert set(v) == set(eps)
    for x in v.values():
        assert x.verdict == "inconclusive" and x.claim == "inconclusive (no reference: cannot tell)"
        assert x.why == (
            "no reference: the audit cannot tell which endpoints serve the model — "
            "2 groups of 2 agree equally: {h1, h2} and {s1, s2}"
        )
    assert rerun_audit(store, run_id, lineup) == v
    store.close()


def test_what_consensus_cannot_take_is_refused_before_any_call(tmp_path):
    """A designated reference beside it, a scorer of one reference, or no greedy regime: each a
    clear error naming the setting, before a database is written."""
    cfg, db = tmp_path / "l.yaml", str(tmp_path / "r.db")
    text = _lineup({"a": ECHO, "b": ECHO})
    for bad, says in (
        ("reference: a\n" + text, "one or the other"),
        (text.replace("reference: consensus,", "reference: consensus, scorer: local,"), "use auto"),
    ):
        cfg.write_text(bad)
        r = bakeoff("audit", "-c", str(cfg), "--db", db, "-q")
        assert r.returncode == 2 and says in r.stderr and "l.yaml" in r.stderr, r.stderr
    cfg.write_text(text)
    r = bakeoff("audit", "-c", str(cfg), "--regime", "sampled", "--db", db, "-q")
    assert r.returncode == 2 and "add greedy to regimes" in r.stderr, r.stderr
