import pytest
from hypothesis import given
from hypothesis import strategies as st

from bakeoff.endpoints import CallResult
from bakeoff.suites import Arith, ExactMatch, Item, NumericMatch, extract_number


@pytest.mark.parametrize(
    "text,want",
    [
        ("42", 42),
        ("42.0", 42),
        ("$42", 42),
        ("= 42", 42),
        ("**42**", 42),
        ("The answer is 42.", 42),
        ("1,234", 1234),
        ("The answer is 1,234 apples", 1234),
        ("17 + 25 = 42", 42),
        ("First 3, then 5, so 8", 8),
        ("-7", -7),
        ("−7", -7),
        ("Answer: 12", 12),
        ("no number here", None),
        ("It costs $1,234.50 in total.", 1234.5),
        ("The answer is 42. I hope this helps with your homework!", 42),
        ("5 + 3 = 8", 8),
        ("First 3 bags, then 4 more: 7", 7),
        ("-17", -17),
        ("−17", -17),
        ("Answer: 12 apples", 12),
        ("**Final answer: 3,000**", 3000),
        ("10 shells = 6 * 2 + 5\nThe answer is 17.", 17),
        ("12 * 5 = 60 pages.\n#### 58", 58),
        ("The answer is: 58", 58),
        ("The answer is 2 + 3 = 5, but in this context", 5),
        ("La respuesta es 2. El resultado 5 + 1 = 6", 2),
        ("", None),
    ],
)
def test_extract_number(text, want):
    assert extract_number(text) == want


@given(st.text(max_size=200))
def test_extract_never_crashes(text):
    extract_number(text)


def _item(target):
    return Item(id="x", target=target)


def test_numeric_and_exact_scorers():
    assert NumericMatch()(_item(12), CallResult(text="The answer is 12.")).passed
    assert not NumericMatch()(_item(12), CallResult(text="13")).passed
    assert ExactMatch()(_item("Paris"), CallResult(text="  paris. ")).passed
    assert not ExactMatch()(_item("Paris"), CallResult(text="Lyon")).passed


def test_arith_is_deterministic_per_seed_with_unique_prompts():
    a, b = Arith().items(seed=5, n=60), Arith().items(seed=5, n=60)
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b]
    assert [i.id for i in a] != [i.id for i in Arith().items(seed=6, n=60)]
    prompts = [i.messages[0]["content"] for i in a]
    assert len(set(prompts)) == len(prompts)
    for it in a:
        assert eval(it.meta["expr"]) == it.target  # the target is the expression's value
