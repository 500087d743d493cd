"""Greedy margins from the reference endpoint's own top log-probabilities (`audit/_topk.py`): the
alignment by text on hand-made token lists, and what a hostile or missing answer becomes."""

from __future__ import annotations

import math

import orjson
import pytest

from bakeoff.audit._greedy import confident, greedy_evidence
from bakeoff.audit._source import FidelityCall
from bakeoff.audit._topk import REASONS, reference_topk, topk_divergence
from bakeoff.suites import Item


def entry(token, logprob, top, raw=None):
    """One OpenAI `logprobs.content` entry; `top` as [(token, logprob)] (the token itself first)."""
    e = {"token": token, "logprob": logprob, "bytes": raw}
    e["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
    return e


REF = [
    entry("The", -0.1, [("The", -0.1), ("A", -2.5)]),
    entry(" capital", -0.2, [(" capital", -0.2), (" city", -1.9)]),
    entry(" of", -0.05, [(" of", -0.05), (" city", -1.3), (" is", -3.0), (",", -4.0)]),
    entry(" France", -0.3, [(" France", -0.3), (" Italy", -0.35)]),
]
TEXT = "The capital of France"


def lps(entries):
    return orjson.dumps(entries).decode()


def test_the_candidates_token_among_the_top_k_gives_the_exact_margin():
    ref = reference_topk(lps(REF), TEXT)
    assert ref.reason is None and ref.k == 4
    d = topk_divergence(ref, "The capital city of France")
    assert d is not None and d.token == 2 and not d.bound
    assert d.reference_piece == " of" and d.candidate_piece == " city"
    assert math.isclose(d.margin, -0.05 - -1.3)
    assert confident(d, 0.1)
    # a near-tie: the reference's own second choice, 0.05 nats below
    tie = topk_divergence(ref, "The capital of Italy")
    assert tie.token == 3 and math.isclose(tie.margin, 0.05) and not confident(tie, 0.1)


def test_a_token_beyond_the_top_k_gives_a_lower_bound():
    ref = reference_topk(lps(REF), TEXT)
    d = topk_divergence(ref, "The capital of Spain")
    # " Spain" is not among the two alternatives at " France": margin ≥ -0.3 - (-0.35)
    assert d.bound and math.isclose(d.margin, 0.05) and not confident(d, 0.1)
    # ":" is not among the four at " of": margin ≥ -0.05 - (-4.0), confident
    d = topk_divergence(ref, "The capital: Paris")
    assert d.token == 2 and d.bound and math.isclose(d.margin, 3.95)
    assert confident(d, 0.1) and d.candidate_piece == ":"


def test_the_likeliest_matching_alternative_is_taken():
    """Two alternatives both spell the start of the candidate's text (" c" and " city"): which one
    its engine took is unknown, so the smaller margin is taken (no honest engine accused by it)."""
    ref_entries = [
        entry("A", -0.1, [("A", -0.1)]),
        entry(" dog", -0.2, [(" dog", -0.2), (" c", -0.9), (" city", -2.0)]),
    ]
    ref = reference_topk(lps(ref_entries), "A dog")
    d = topk_divergence(ref, "A city")
    assert math.isclose(d.margin, -0.2 - -0.9) and d.candidate_piece == " c"


def test_outputs_that_do_not_part_or_stop_early():
    ref = reference_topk(lps(REF), TEXT)
    assert topk_divergence(ref, TEXT) is None
    # the candidate stops early: cut by the token limit is not parting; a stop is (margin unknown)
    assert topk_divergence(ref, "The capital", candidate_finish="length") is None
    d = topk_divergence(ref, "The capital", candidate_finish="stop")
    assert d.margin is None and d.candidate_piece == "<end>" and confident(d, 0.1)
    # the reference stops where the candidate goes on
    d = topk_divergence(ref, TEXT + " is Paris", reference_finish="stop")
    assert d.margin is None and d.reference_piece == "<end>" and d.token == 4
    assert topk_divergence(ref, TEXT + " is Paris", reference_finish="length") is None
    # an empty candidate answer against a reference that said something
    d = topk_divergence(ref, "", candidate_finish="stop")
    assert d.token == 0 and d.margin is None


def test_multi_byte_text_by_bytes_and_by_strings():
    """'é' is two UTF-8 bytes: OpenAI returns a token per byte with its `bytes`, the token string
    unreadable; the alignment works on bytes, and a candidate parting inside the character finds
    its alternative by bytes."""
    e1, e2 = list("é".encode())
    by_bytes = [
        entry("Caf", -0.1, [("Caf", -0.1)], raw=list(b"Caf")),
        {
            "token": "bytes:\\xc3",
            "logprob": -0.2,
            "bytes": [e1],
            "top_logprobs": [
                {"token": "bytes:\\xc3", "logprob": -0.2, "bytes": [e1]},
                {"token": "e", "logprob": -1.7, "bytes": list(b"e")},
            ],
        },
        {"token": "bytes:\\xa9", "logprob": -0.01, "bytes": [e2], "top_logprobs": []},
    ]
    ref = reference_topk(lps(by_bytes), "Café")
    # the last entry has no alternatives: a call with an entry without top_logprobs is refused whole
    assert ref.reason == "no_top"
    by_bytes[2]["top_logprobs"] = [{"token": "x", "logprob": -0.01, "bytes": [e2]}]
    ref = reference_topk(lps(by_bytes), "Café")
    assert ref.reason is None
    d = topk_divergence(ref, "Cafe au lait")
    assert d.token == 1 and math.isclose(d.margin, 1.5) and d.candidate_piece == "e"
    # the same text as whole-character token strings (llama.cpp's server: "bytes": null)
    by_strings = [entry("Caf", -0.1, [("Caf", -0.1)]), entry("é", -0.2, [("é", -0.2), ("e", -3)])]
    d = topk_divergence(reference_topk(lps(by_strings), "Café"), "Cafe")
    assert math.isclose(d.margin, 2.8) and d.reference_piece == "é"
    # partial characters dropped from token strings (errors="ignore"): they do not spell the text
    broken = [entry("Caf", -0.1, [("Caf", -0.1)]), entry("", -0.2, [("", -0.2)])]
    assert reference_topk(lps(broken), "Café").reason == "unaligned"


def test_leading_whitespace_a_provider_stripped_from_the_content():
    entries = [
        entry(" Hello", -0.1, [(" Hello", -0.1)]),
        entry(" world", -0.4, [(" world", -0.4), (" there", -0.6)]),
    ]
    ref = reference_topk(lps(entries), "Hello world")
    assert ref.reason is None and ref.shift == 1
    d = topk_divergence(ref, "Hello there")
    assert d.token == 1 and math.isclose(d.margin, 0.2)
    assert topk_divergence(ref, " Hello world") is None


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("[]", "missing"),
        ("null", "missing"),
        ("not json", "malformed"),
        ('{"content": []}', "malformed"),
        ("[1, 2]", "malformed"),
        ('[{"token": 3, "logprob": -1, "top_logprobs": []}]', "malformed"),
        (
            '[{"token": "a", "logprob": "NaN", "top_logprobs": [{"token": "a", "logprob": -1}]}]',
            "malformed",
        ),
        (
            '[{"token": "a", "logprob": 5.0, "top_logprobs": [{"token": "a", "logprob": -1}]}]',
            "malformed",
        ),
        (
            '[{"token": "a", "logprob": -1e999, "top_logprobs": [{"token": "a", "logprob": -1}]}]',
            "malformed",
        ),
        ('[{"token": "a", "logprob": -1, "top_logprobs": {"a": -1}}]', "malformed"),
        ('[{"token": "a", "logprob": -1, "top_logprobs": ["a"]}]', "malformed"),
        (
            '[{"token": "a", "logprob": -1, "top_logprobs": [{"token": "a", "logprob": true}]}]',
            "malformed",
        ),
        (
            '[{"token": "a", "logprob": -1, "top_logprobs": [{"token": null, "logprob": -1}]}]',
            "malformed",
        ),
        (
            '[{"token": "a", "logprob": -1, "bytes": "x", "top_logprobs": [{"token": "a", "logprob": -1}]}]',
            "malformed",
        ),
        ('[{"token": "a", "logprob": -1}]', "no_top"),
        ('[{"token": "a", "logprob": -1, "top_logprobs": null}]', "no_top"),
        (
            '[{"token": "b", "logprob": -1, "top_logprobs": [{"token": "b", "logprob": -1}]}]',
            "unaligned",
        ),
    ],
)
def test_hostile_or_missing_logprobs_are_a_reason_never_an_exception(stored, reason):
    assert reference_topk(stored, "a").reason == reason
    assert reason in REASONS


def test_a_flood_of_alternatives_is_refused():
    top = [{"token": str(i), "logprob": -1.0} for i in range(1000)]
    stored = orjson.dumps([{"token": "a", "logprob": -0.5, "top_logprobs": top}]).decode()
    assert reference_topk(stored, "a").reason == "malformed"


def row(ep, text, repeat=0, logprobs=None, finish="stop"):
    return FidelityCall(ep, "fidelity.greedy", "i", repeat, "ok", text, finish, 5, 4, logprobs)


def test_greedy_evidence_from_top_k_counts_and_leaves_out_by_reason():
    """Per prompt: the candidate parts confidently (X) and the reference's repeat at a near-tie
    (not counted); a prompt whose reference answer has no log-probabilities is left out of both."""
    it = Item(id="i", tier="greedy", messages=[{"role": "user", "content": "q"}], params={})
    good = lps(REF)
    pairs = [
        (
            it,
            row("r", TEXT, 0, good),
            row("r", "The capital of Italy", 1),
            row("c", "The capital city"),
        )
        for _ in range(6)
    ]
    pairs += [(it, row("r", TEXT, 0, None), row("r", TEXT, 1), row("c", "Nothing alike"))] * 2
    pairs += [(it, row("r", TEXT, 0, "garbage"), row("r", TEXT, 1), row("c", "Nothing"))]
    out = greedy_evidence(pairs, None, margin=0.1, delta=0.05, alpha=0.05, top=True)
    assert out.n == 6 and out.confident_differ == 6 and out.reference_repeat_differ == 0
    assert out.left_out == {"missing": 2, "malformed": 1} and out.top_k == 4
    assert out.margin == 0.1 and out.near_ties == 0 and out.bounded == 0
    assert out.examples[0].margin == 1.25 and out.examples[0].candidate_token == " city"
    # without the top-k, every divergence counts (margin 0) and nothing is left out
    old = greedy_evidence(pairs, None, margin=0.1, delta=0.05, alpha=0.05)
    assert old.n == 9 and old.margin == 0.0 and old.left_out is None
    assert old.reference_repeat_differ == 6  # the repeat's near-tie, counted as evidence


LINEUP = """
reference: ref
audit: {regimes: [greedy], budget: 8, seed: 3}
endpoints:
  - {name: ref, provider: openai, base_url: "http://127.0.0.1:9/v1", model: m}
  - {name: cand, provider: openai, base_url: "http://127.0.0.1:9/v1", model: m}
"""


def stored_rows(items, ref_logprobs):
    """The stored call rows of an audit: the reference twice (its answers' logprobs as given), the
    candidate once, every candidate answer parting at " city" where the reference is sure."""
    rows = []
    for it in items:
        for ep, k, text, lp in (
            ("ref", 0, TEXT, ref_logprobs),
            ("ref", 1, TEXT, None),
            ("cand", 0, "The capital city of France", None),
        ):
            rows.append(
                {
                    "endpoint": ep,
                    "suite": "fidelity.greedy",
                    "item_id": it.id,
                    "repeat": k,
                    "status": "ok",
                    "output_text": text,
                    "finish_reason": "stop",
                    "prompt_tokens": 9,
                    "completion_tokens": 4,
                    "logprobs_json": lp,
                }
            )
    return rows


@pytest.mark.parametrize(
    ("ref_logprobs", "source"), [(lps(REF), "top_logprobs"), (None, "none"), ("{]", "none")]
)
def test_the_analysis_names_its_margin_source(ref_logprobs, source):
    """From stored calls alone: margins from the reference's top-k when its answers carry them,
    else the old rule (every divergence counts) with the warning that an honest engine may be
    called different; the verdict says which, and so does the CLI's table."""
    from rich.console import Console

    from bakeoff.audit import analyse, audit_items
    from bakeoff.audit._source import CallSource
    from bakeoff.cli._audit import verdict_table
    from bakeoff.lineups import parse_lineup

    lineup = parse_lineup(LINEUP)
    items = audit_items("greedy", lineup.audit)
    source_rows = CallSource(stored_rows(items, ref_logprobs), {})
    v = analyse(source_rows, "r", lineup, lineup.audit, {"greedy": items})["cand"]
    g = v.tests["greedy"]
    assert v.margin_source == g.margin_source == source
    assert g.confident_differ == 8 and g.n == 8  # sure of " of" by 1.25 nats: counted either way
    if source == "none":
        assert g.margin == 0.0 and "honest engine" in (g.note or "")
    else:
        assert g.margin == 0.1 and g.top_k == 4 and g.examples[0].margin == 1.25
    console = Console(width=400, record=True)
    console.print(verdict_table("r", {"cand": v}))
    shown = console.export_text()
    words = {"none": "none: every divergence counts", "top_logprobs": "top-4 log-probabilities"}
    assert words[source] in shown


def test_an_honest_engine_flipping_near_ties_is_not_accused():
    """An honest deployment on other hardware flips the reference's argmax where its top two are a
    hair apart (" France" vs " Italy", 0.05 nats) — here on 12 of 30 prompts, as BF16 engines on
    GPUs are reported to. From the reference's own top-k, none of it counts; the old rule (every
    divergence, which a hosted reference without a scorer got) calls it different."""
    from bakeoff.audit import analyse, audit_items
    from bakeoff.audit._source import CallSource
    from bakeoff.lineups import parse_lineup

    lineup = parse_lineup(LINEUP.replace("budget: 8", "budget: 30"))
    items = audit_items("greedy", lineup.audit)
    rows = stored_rows(items, lps(REF))
    for i, r in enumerate(rows):
        if r["endpoint"] == "cand":
            r["output_text"] = "The capital of Italy" if i % 5 < 2 else TEXT
    v = analyse(CallSource(rows, {}), "r", lineup, lineup.audit, {"greedy": items})["cand"]
    g = v.tests["greedy"]
    assert g.differ == 12 and g.confident_differ == 0 and g.near_ties == 12
    assert v.verdict != "different" and v.margin_source == "top_logprobs"
    for r in rows:
        r["logprobs_json"] = None  # the reference returned none: the old rule, said so
    v = analyse(CallSource(rows, {}), "r", lineup, lineup.audit, {"greedy": items})["cand"]
    assert v.verdict == "different" and v.margin_source == "none"


def test_a_longer_token_where_the_reference_had_its_prefix_parts_there():
    """ " 10" where the reference said " 1" then " 5": the texts first differ at " 5", but the
    candidate parted at " 1" (a near-tie here); the alternative that spells its text across the
    differing byte is found, and its small margin keeps an honest flip from counting. (Taken at
    " 5", where "0" is no alternative, it was a lower bound of 3 nats: confident.)"""
    entries = [
        entry(" 1", -0.50, [(" 1", -0.50), (" 10", -0.55), (" 2", -2.0)]),
        entry(" 5", -0.01, [(" 5", -0.01), (" 6", -3.0)]),
    ]
    ref = reference_topk(lps(entries), " 1 5")
    d = topk_divergence(ref, " 10 5")
    assert d.token == 0 and not d.bound and math.isclose(d.margin, 0.05)
    assert not confident(d, 0.1) and d.candidate_piece == " 10"


def test_leading_whitespace_the_content_kept_is_no_divergence():
    """The reference's content kept its leading space (its tokens spell it): the candidate's same
    answer, space and all, does not part from it (it was counted a confident divergence at token 0)."""
    entries = [entry(" Hi", -0.1, [(" Hi", -0.1), (" Yo", -3.0)])]
    ref = reference_topk(lps(entries), " Hi")
    assert ref.shift == 0
    assert topk_divergence(ref, " Hi") is None and topk_divergence(ref, "Hi") is None
    d = topk_divergence(ref, " Yo")
    assert d.token == 0 and math.isclose(d.margin, 2.9)
