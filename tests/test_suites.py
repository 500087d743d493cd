"""Suite generators (deterministic per seed, tiers as documented) and the extractors and scorers,
table-driven over the formats models really produce."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bakeoff.endpoints import CallResult
from bakeoff.endpoints._types import ToolCall
from bakeoff.plugins import suites as all_suites
from bakeoff.suites import EVAL_SUITES
from bakeoff.suites.code import extract_code
from bakeoff.suites.datasets import extract_choice
from bakeoff.suites.instructions import Constraint
from bakeoff.suites.long_output import LongOutputSuite
from bakeoff.suites.tools import ToolsSuite, call_matches

BUILTIN = ["arith", *EVAL_SUITES]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 25), name=st.sampled_from(BUILTIN))
def test_generators_are_deterministic_per_seed(seed: int, n: int, name: str) -> None:
    suite = all_suites()[name]
    a, b = suite.items(seed=seed, n=n), suite.items(seed=seed, n=n)
    assert [x.stored() for x in a] == [x.stored() for x in b]
    assert len({x.id for x in a}) == len(a) == n
    prompts = [json.dumps(x.messages) for x in a]
    assert len(set(prompts)) == len(prompts), "a suite never asks the same question twice"
    assert all(x.tier in suite.tiers for x in a)


@pytest.mark.parametrize("name", BUILTIN)
def test_other_seed_other_items(name: str) -> None:
    suite = all_suites()[name]
    a = [x.messages for x in suite.items(seed=1, n=6)]
    b = [x.messages for x in suite.items(seed=2, n=6)]
    assert a != b


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("```python\ndef f(x):\n    return x\n```", "def f(x):\n    return x\n"),
        ("Sure!\n```py\ndef f(x): return 1\n```\nDone.", "def f(x): return 1\n"),
        ("```\ndef f(x): return 2\n```", "def f(x): return 2\n"),
        ("```python\nimport math\n```\n```python\ndef f(x): return 3\n```", "def f(x): return 3\n"),
        ("def f(x):\n    return 4", "def f(x):\n    return 4"),
        ("```python\ndef f(x):\n    return 5", "def f(x):\n    return 5"),
    ],
)
def test_extract_code(text: str, want: str) -> None:
    assert extract_code(text, "f") == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("B", "B"),
        ("Answer: C", "C"),
        ("The answer is (D).", "D"),
        ("**A**", "A"),
        ("B) because it is larger", "B"),
        ("I pick option c", "C"),
        ("A or B?", None),
        ("none", None),
    ],
)
def test_extract_choice(text: str, want: str | None) -> None:
    assert extract_choice(text, 4) == want


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        ({"name": "f", "arguments": {"n": 3}}, {"name": "f", "arguments": {"n": 3.0}}, True),
        ({"name": "f", "arguments": {"n": "3"}}, {"name": "f", "arguments": {"n": 3}}, True),
        (
            {"name": "f", "arguments": {"c": " lisbon"}},
            {"name": "f", "arguments": {"c": "Lisbon"}},
            True,
        ),
        ({"name": "g", "arguments": {"n": 3}}, {"name": "f", "arguments": {"n": 3}}, False),
        ({"name": "f", "arguments": {"n": 4}}, {"name": "f", "arguments": {"n": 3}}, False),
        ({"name": "f", "arguments": {}}, {"name": "f", "arguments": {"n": 3}}, False),
    ],
)
def test_tool_call_match(got: dict, want: dict, ok: bool) -> None:
    assert call_matches(got, want) is ok


def test_parallel_calls_match_in_any_order() -> None:
    suite = ToolsSuite()
    item = next(it for it in suite.items(seed=0, n=10) if it.tier == "parallel")
    calls = [ToolCall(name=c["name"], arguments=json.dumps(c["arguments"])) for c in item.target]
    fwd = suite.score(item, CallResult(tool_calls=calls, finish_reason="tool_calls"))
    rev = suite.score(item, CallResult(tool_calls=calls[::-1], finish_reason="tool_calls"))
    one = suite.score(item, CallResult(tool_calls=calls[:1], finish_reason="tool_calls"))
    assert fwd[0].passed and rev[0].passed and not one[0].passed
    bad_schema = [ToolCall(name=calls[0].name, arguments='{"nope": 1}')]
    assert suite.score(item, CallResult(tool_calls=bad_schema))[1].passed is False


@pytest.mark.parametrize(
    ("kind", "args", "text", "ok"),
    [
        ("min_words", {"n": 3}, "one two three", True),
        ("min_words", {"n": 3}, "one two", False),
        ("max_words", {"n": 3}, "one two", True),
        ("min_sentences", {"n": 2}, "One. Two!", True),
        ("min_sentences", {"n": 2}, "One only.", False),
        ("paragraphs", {"n": 2}, "a\n\nb", True),
        ("paragraphs", {"n": 2}, "a\nb", False),
        ("bullets", {"n": 2}, "- a\n- b", True),
        ("bullets", {"n": 2}, "- a\n- b\n- c", False),
        ("bullets", {"n": 2}, "* a\n* b", True),
        ("no_commas", {}, "a b c", True),
        ("no_commas", {}, "a, b", False),
        ("lowercase", {}, "all lower", True),
        ("lowercase", {}, "Not lower", False),
        ("uppercase", {}, "ALL UPPER 1", True),
        ("keywords", {"words": ["ember"]}, "An Ember glows.", True),
        ("keywords", {"words": ["ember"]}, "Embers glow.", False),
        ("forbidden", {"words": ["very"]}, "every day", True),
        ("forbidden", {"words": ["very"]}, "a very day", False),
        ("start", {"phrase": "In short"}, "  in short, yes", True),
        ("end", {"phrase": "The end."}, "story. The end.", True),
        ("end", {"phrase": "The end."}, "The end. More", False),
        ("json", {}, '{"text": "x"}', True),
        ("json", {}, '```json\n{"text": "x"}\n```', True),
        ("json", {}, "text: x", False),
        ("placeholders", {"n": 2}, "Dear [name] at [address]", True),
        ("placeholders", {"n": 2}, "Dear [name]", False),
        ("sections", {"n": 2}, "SECTION 1\na\nSECTION 2\nb", True),
        ("sections", {"n": 2}, "SECTION 1\na", False),
    ],
)
def test_instruction_checkers(kind: str, args: dict, text: str, ok: bool) -> None:
    assert Constraint(kind, args).check(text) is ok


def test_instructions_loose_accepts_a_preamble_strict_does_not() -> None:
    suite = all_suites()["instructions"]
    item = next(
        it for it in suite.items(seed=0, n=30) if [c["kind"] for c in it.target] == ["json"]
    )
    scores = suite.score(item, CallResult(text='Sure, here it is:\n{"text": "x"}'))
    assert scores[0].scorer == "strict" and not scores[0].passed
    assert scores[1].scorer == "loose" and scores[1].passed


def test_long_output_flags_elision_and_length_stop() -> None:
    suite = LongOutputSuite()
    item = suite.items(seed=0, n=2)[1]  # a medium item: 30-60 lines
    full = suite.reference_reply(item).content or ""
    lines = full.split("\n")
    elided = "\n".join([*lines[:3], "...and so on", lines[-1]])
    s = {x.scorer: x for x in suite.score(item, CallResult(text=elided, finish_reason="stop"))}
    assert not s["complete"].passed and not s["no_elision"].passed
    cut = suite.score(item, CallResult(text="\n".join(lines[:5]), finish_reason="length"))
    assert not cut[0].passed and cut[3].passed is False


def test_long_context_flags_silent_truncation() -> None:
    suite = all_suites()["long-context"]
    item = next(it for it in suite.items(seed=0, n=12, max_context=2048) if it.tier == "multi")
    last = item.target[-1]
    s = {
        x.scorer: x for x in suite.score(item, CallResult(text=f"{last['label']}: {last['code']}"))
    }
    assert s["truncation_suspected"].value == 1.0 and "early needle lost" in (
        s["all_needles"].detail or ""
    )
    ok = {
        x.scorer: x
        for x in suite.score(
            item, CallResult(text=suite.reference_reply(item).content or "", prompt_tokens=10)
        )
    }
    assert ok["all_needles"].passed and ok["truncation_suspected"].value == 1.0  # usage far too low


def test_long_context_lengths_follow_the_claim() -> None:
    suite = all_suites()["long-context"]
    lengths = {it.meta["context_tokens"] for it in suite.items(seed=0, n=20, max_context=8192)}
    assert lengths == {256, 512, 1024, 2048, 4096, 8192}
