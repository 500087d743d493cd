"""The typed hand-offs read what older versions stored: a probe result without the keys added since
(`said`, `limit_reached`) gives the same capability row, and a vote row written as the votes table
has always held it reads back as a `VoteRecord` with its judge's detail."""

from __future__ import annotations

from bakeoff.runs import capability_row
from bakeoff.store import ProbeResult, Store, VoteRecord

OLD_PROBE: ProbeResult = {
    "context": {
        "claimed": 4096,
        "largest_accepted_est": 2048,
        "largest_prompt_tokens": 2001,
        "first_rejected_est": None,
        "stopped_by": None,
        "limit_tried": 4096,
        "silent_truncation": None,
        "needle_at_start": {"tokens_est": 2048, "found": True},
        "points": [
            {"sent_tokens_est": 2048, "accepted": True, "prompt_tokens": 2001, "error": None},
            {
                "sent_tokens_est": 4096,
                "accepted": False,
                "prompt_tokens": None,
                "error": "context_overflow: too long",
            },
        ],
    },
    "max_output": {"asked": 512, "produced": 512, "finish_reason": "length", "honoured": True,
                   "capped_at": None},
    "stream_usage": {"accepted": True, "honoured": True, "error": None},
    "logprobs": {"accepted": False, "honoured": False, "error": "bad_request: HTTP 400"},
    "top_logprobs": {"accepted": False, "honoured": False, "error": "bad_request: HTTP 400"},
    "tools": {"accepted": True, "honoured": False, "error": None},
    "parallel_tools": {"accepted": True, "honoured": True, "error": None},
    "json_mode": {"accepted": True, "honoured": True, "error": None},
    "json_schema": {"not_tested": "the preset strips response_format"},
    "seed_determinism": {"accepted": True, "honoured": True, "error": None, "errors": []},
}  # fmt: skip
"""A probe result as stored before `said` (a refusal's body) and `limit_reached` were kept."""


def test_an_older_probe_result_reads_as_it_did(tmp_path):
    store = Store(tmp_path / "p.db")
    store.put_probe("run-1", "ep", OLD_PROBE)
    (name, stored), = store.probes("run-1").items()  # fmt: skip
    assert name == "ep" and stored == OLD_PROBE
    assert capability_row(stored) == {
        "context_tokens": 2001,  # the search met a refusal: the limit, not `≥ 2001`
        "context_claimed": 4096,
        "silent_truncation": None,
        "max_output_honoured": True,
        "output_capped_at": None,
        "stream_usage": "yes",
        "logprobs": "no",  # a 4xx with no body kept: refused, as before `said`
        "top_logprobs": "no",
        "tools": "accepted",
        "parallel_tools": "yes",
        "json_mode": "yes",
        "json_schema": "not tested: the preset strips it",
        "seed_determinism": "yes",
        "probe_faults": 0,
    }


def test_a_stored_vote_reads_back_typed(tmp_path):
    store = Store(tmp_path / "v.db")
    store.create_run(
        "run-1", config_hash="h", lineup_json="{}", source=None, reference=None, endpoints=[],
        version="0",
    )  # fmt: skip
    with store.transaction() as db:  # a row as every version wrote it
        db.execute(
            'INSERT INTO votes (run_id, suite, item_id, repeat, "left", "right", winner, voter,'
            " left_chars, right_chars, detail_json, created_at)"
            " VALUES ('run-1', 'arith', 'a-1', 0, 'x', 'y', 'tie', 'judge:j', 3, NULL,"
            ' \'{"a_first": "A", "b_first": "A", "choices": ["A", "A"], "consistent": false}\','
            " '2026-01-01T00:00:00Z')"
        )
    store.add_vote("run-1", VoteRecord(suite="arith", item_id="a-2", left="y", right="x",
                                       winner="left", voter="human"))  # fmt: skip
    old, new = store.votes("run-1")
    assert (old.winner, old.voter, old.left_chars, old.right_chars) == ("tie", "judge:j", 3, None)
    assert old.detail == {"a_first": "A", "b_first": "A", "choices": ["A", "A"],
                          "consistent": False}  # fmt: skip
    assert old.id is not None and (new.repeat, new.detail, new.id) == (0, None, old.id + 1)
