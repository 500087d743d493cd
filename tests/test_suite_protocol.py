"""`as_suite`: what the runner reads of a suite, whatever members the suite itself gives."""

from __future__ import annotations

import asyncio

from bakeoff.endpoints import CallResult
from bakeoff.lineups import parse_lineup
from bakeoff.runs import suite_for
from bakeoff.suites import Item, Score, Suite, as_suite


class Minimal:
    """A plugin's suite with only the members a suite must give."""

    name = "minimal"
    description = "d"
    default_size = 1
    tiers = ("all",)

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        return [Item(id="a", prompt="q")]

    def score(self, item: Item, result: CallResult) -> list[Score]:
        return [Score(scorer="pass", value=1.0, passed=True)]


def test_a_minimal_suite_gets_the_defaults_and_scores_with_score():
    s = as_suite(Minimal())
    assert isinstance(s, Suite)
    assert (s.linear_scoring, s.runs_model_code, s.judge_endpoint) == (False, False, None)
    scores = asyncio.run(s.ascore(Item(id="a", prompt="q"), CallResult(text="x")))
    assert [sc.passed for sc in scores] == [True]
    assert [it.id for it in s.items(seed=0)] == ["a"]


def test_a_whole_suite_is_itself_and_the_built_ins_say_what_they_need():
    whole = as_suite(Minimal())
    assert as_suite(whole) is whole
    lu = parse_lineup(
        "run: {suites: [arith, code, qa]}\n"
        "datasets:\n"
        "  - {name: qa, path: /nonexistent.jsonl, scorer: judge, judge: grader}\n"
        "endpoints:\n"
        "  - {name: grader, provider: fake}\n"
    )
    assert suite_for(lu, "arith").linear_scoring
    assert suite_for(lu, "code").runs_model_code
    assert suite_for(lu, "qa").judge_endpoint == "grader"
