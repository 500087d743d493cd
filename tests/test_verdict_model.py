"""The typed verdict (`bakeoff.store.Verdict`) reads what the store holds and writes it back as it
was: every key a run stored, none added, an unknown one (a past version's) kept; a stored answer of
the wrong shape is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from bakeoff.audit._stored import StoredScorer
from bakeoff.store import Store, Verdict

SAME = {
    "verdict": "same",
    "claim": "same ≤1% (0/350; routes ≥4.5% to Q8_0-like ruled out)",
    "why": "0 confident greedy divergences in 350 calls ...",
    "rules_out": [
        {"substitute": "Q8_0-like", "changes": 0.22, "source": "x", "route_share": 0.0452}
    ],
    "p_value": 1.0,
    "e_value": 0.0213,
    "multiplicity": "per_endpoint",
    "calls": 350,
    "tokens": 12000,
    "errors": 0,
    "alpha": 0.05,
    "tests": {
        "greedy": {
            "n": 350,
            "confident_differ": 0,
            "reference_repeat_differ": 0,
            "tolerance": 0.01,
            "p_value": 1.0,
            "rejected_at": None,
            "wealth": [0.95, 0.9],
            "same_within": 0.01,
            "rate_upper_bound": 0.0099,
            "excess_lower_bound": -0.0085,
            "same_at": 343,
            "calls_for_same": 343,
            "differ": 1,
            "near_ties": 1,
            "margin": 0.1,
            "disagreement_rate": 0.0029,
            "sampler_flag": None,
            "examples": [
                {
                    "item": "fid-1-0003",
                    "prompt": "Say something.",
                    "reference": "a",
                    "candidate": "b",
                    "diverges_at_token": 0,
                    "margin": 0.002,
                    "reference_token": "a",
                    "candidate_token": "b",
                    "confident": False,
                }
            ],
            "power": [{"effect": 0.1, "different": 1.0, "same": 0.0, "expected_calls": 91.4}],
            "power_is_exact": True,
            "power_method": "exact: ...",
        },
        "sampled": {
            "n": 2,
            "mmd_p_value": 1.0,
            "p_value": 1.0,
            "rejected_at": None,
            "wealth": [],
            "note": "no reference scorer",
        },
    },
    "behaviour": {
        "prompt_tokens_delta_vs_reference": 0,
        "prompt_tokens_mismatch_rate": 0.0,
        "style": {"candidate": {}, "reference": {"mean_words": 3.5}},
        "suites": {"tool_call_f1": None, "tool_items": 4},
        "flags": [],
    },
}


def test_a_stored_verdict_reads_typed_and_writes_back_as_it_was():
    v = Verdict.model_validate(SAME)
    assert v.verdict == "same" and v.rules_out and v.rules_out[0].route_share == 0.0452
    g = v.tests["greedy"]
    assert g.same_at == 343 and g.power and g.power[0].expected_calls == 91.4
    assert g.examples and g.examples[0].confident is False
    assert v.behaviour.suites is not None and v.behaviour.suites.tool_items == 4
    assert v.to_json() == SAME  # no key added (unset ones left out), none lost


def test_an_old_verdict_missing_keys_and_with_unknown_ones_round_trips():
    """A past version's row: no e_value or multiplicity (added later), a key this one does not
    know; it reads with the defaults, and is written back exactly as stored."""
    old = {
        "verdict": "different",
        "p_value": 0.01,
        "why": "the greedy test rejected",
        "calls": 10,
        "tokens": 100,
        "tests": {
            "greedy": {
                "n": 10,
                "wealth": [30.0],
                "examples": [{"item": "i", "diverges_at_word": 3}],
            }
        },
        "behaviour": {"flags": ["x"]},
        "retired_key": {"anything": [1, 2]},
    }
    v = Verdict.model_validate(old)
    assert v.multiplicity == "per_endpoint" and v.e_value == 1.0 and v.claim is None
    assert v.to_json() == old


def test_the_store_returns_typed_verdicts_and_keeps_the_json(tmp_path):
    from bakeoff.lineups import parse_lineup
    from bakeoff.runs import create_run

    store = Store(tmp_path / "db.sqlite")
    lineup = parse_lineup(
        "reference: ref\nrun: {suites: []}\nendpoints:\n"
        "  - {name: ref, provider: fake}\n  - {name: twin, provider: fake}\n"
    )
    run_id = create_run(store, lineup)
    store.put_verdict(run_id, "twin", Verdict.model_validate(SAME))
    got = store.verdicts(run_id)
    assert isinstance(got["twin"], Verdict) and got["twin"].to_json() == SAME
    store.close()


def test_a_verdict_of_an_unknown_kind_is_refused():
    with pytest.raises(ValidationError):
        Verdict.model_validate({**SAME, "verdict": "probably"})


@pytest.mark.parametrize(
    "answer",
    [{"tokens": 1}, [1, 2], {"tokens": [1], "logprobs": [-0.1], "ranks": [0]}, "text"],
)
def test_a_stored_answer_of_the_wrong_shape_is_a_clear_error(answer):
    """A bundle's scorer answers are a file anyone may write: one without an answer's numbers is
    refused as such (it was a KeyError or TypeError from deep inside the analysis)."""
    from bakeoff.audit._stored import _key

    s = StoredScorer(None, "r", "reference", None, answers={_key("score", [1], "x"): answer})
    with pytest.raises(ValueError, match="lacks its numbers"):
        s.score([1], "x", np.random.default_rng(0))
