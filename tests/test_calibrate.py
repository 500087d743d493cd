"""`bakeoff calibrate` as a user runs it, on small audits (the full table is bench/fidelity_power.py)."""

from __future__ import annotations

import json
import sqlite3

from conftest import bakeoff


def test_calibrate_runs_independent_audits_and_prints_exact_intervals(tmp_path):
    out = tmp_path / "cal.json"
    keep = tmp_path / "audits"
    # two repetitions of 10 prompts, one engine null and one distortion: the machinery (independent
    # audits, exact intervals, resuming); the rates themselves are `make calibrate`'s (docs/FIDELITY.md;
    # at 10 prompts Q2_K was "different" in 1 of 2 repetitions). Audited as a user of a hosted
    # reference is: no scorer, the margins from the reference's own top-5 (the GGUF scorer's audits
    # are test_audit_local's)
    args = ("calibrate", "--reps", "2", "--greedy-budget", "10", "--sampled-budget", "0")
    args += ("--endpoints", "f16-batch8,sysprompt", "--scorer", "top_logprobs")
    # the local lineup's servers on a slow 2-core machine: 300 s was not enough on one that ran
    # the whole of make test in 38 min
    r = bakeoff(*args, "--keep", str(keep), "--json", str(out), timeout=900)
    assert r.returncode == 0, r.stderr
    assert "different@10" in r.stdout and "f16-batch8 (null)" in r.stdout
    assert "0/2 (0.00–0.84)" in r.stdout  # the nulls' exact interval at 0 of 2
    assert "top-5 log-probabilities (no scorer)" in r.stdout
    res = json.loads(out.read_text())
    eps = res["regimes"]["greedy"]["endpoints"]
    assert eps["f16-batch8"]["counts"]["different@10"] == 0, eps["f16-batch8"]
    assert eps["sysprompt"]["counts"]["different@10"] == 2, eps["sysprompt"]

    # the two repetitions are independent audits: no prompt in common, each its own database
    prompts = []
    for rep in (0, 1):
        db = sqlite3.connect(keep / f"top_logprobs-greedy-{rep:02d}.db")
        prompts.append({row[0] for row in db.execute("SELECT input_json FROM items")})
        sources = {
            json.loads(v)["margin_source"]
            for (v,) in db.execute("SELECT evidence_json FROM verdicts")
        }
        assert sources == {"top_logprobs"}, sources  # no GGUF scored, though one was at hand
    assert len(prompts[0]) == len(prompts[1]) == 10 and not prompts[0] & prompts[1]

    # kept audits are re-read without a call: the same results
    db = sqlite3.connect(keep / "top_logprobs-greedy-00.db")
    n_calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    again = tmp_path / "again.json"
    r = bakeoff(*args, "--keep", str(keep), "--json", str(again), timeout=900)
    assert r.returncode == 0, r.stderr
    assert "no new call" in r.stderr
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == n_calls
    assert json.loads(again.read_text()) == res


def test_calibrate_refuses_an_unknown_endpoint():
    r = bakeoff("calibrate", "--endpoints", "q2_k,nope")
    assert r.returncode == 2
    assert "nope" in r.stderr and "f16-torch" in r.stderr


def test_calibrate_without_a_scorer_refuses_the_sampled_regime():
    """The sampled regime scores samples under the reference model: with no scorer it cannot run,
    and saying so beats a table of verdicts computed without it."""
    r = bakeoff("calibrate", "--scorer", "top_logprobs", "--greedy-budget", "10")
    assert r.returncode == 2
    assert "--sampled-budget 0" in r.stderr
    r = bakeoff("calibrate", "--scorer", "gguf")
    assert r.returncode == 2 and "top_logprobs" in r.stderr


def test_the_table_of_candidates_without_a_null_row():
    """`--endpoints q8_0` (no engine null among them): the table prints (it was an IndexError),
    its counts read from the typed verdicts."""
    from bakeoff.audit._calibrate import _tally, format_table
    from bakeoff.store import Verdict

    verdicts = [
        Verdict(verdict="different", claim="different (p=0.01, 9/10)", p_value=0.01, calls=10),
        Verdict(verdict="inconclusive", claim="inconclusive (1/20, ≤30%)", p_value=0.5, calls=20),
    ]
    tally = _tally("greedy", 20, verdicts)
    assert tally["counts"] == {"different@10": 1, "different@20": 1, "same": 0, "inconclusive": 1}
    table = format_table(
        {
            "alpha": 0.05,
            "reps": 2,
            "regimes": {"greedy": {"budget": 20, "endpoints": {"q8_0": tally}}},
        }
    )
    assert "| q8_0 | 1/2 (" in table and "pooled" not in table

    # two engine nulls: their rows, then the two pooled (k of 4) beneath them
    null = _tally("greedy", 20, [verdicts[1], verdicts[1]])
    one = _tally("greedy", 20, [verdicts[0], verdicts[1]])
    eps = {"q8_0": tally, "f16-batch8": null, "f32": one}
    table = format_table(
        {"alpha": 0.05, "reps": 2, "regimes": {"greedy": {"budget": 20, "endpoints": eps}}}
    )
    rows = [r for r in table.splitlines() if r.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| f16-batch8 (null)",
        "| f32 (null)",
        "| engine nulls pooled",
        "| q8_0",
    ]
    assert rows[2].split(" | ")[1].startswith("1/4 (")
