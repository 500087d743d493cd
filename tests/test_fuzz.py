"""Fuzzing with hypothesis: the SSE parser, the lineup loader, the answer extractors and scorers take
any input without an uncaught exception. `make test` runs a few hundred examples each; `make fuzz`
runs 10,000 each (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bakeoff.endpoints import CallResult
from bakeoff.endpoints._sse import SSEParser
from bakeoff.endpoints._types import ToolCall
from bakeoff.lineups import Lineup, LineupError, parse_lineup
from bakeoff.plugins import suites as all_suites
from bakeoff.suites import extract_number
from bakeoff.suites.code import extract_code
from bakeoff.suites.datasets import extract_choice, parse_verdict
from bakeoff.suites.instructions import Constraint, _make
from bakeoff.suites.structured import parse_json

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)
SUITES = [
    "math",
    "instructions",
    "tools",
    "structured",
    "long-context",
    "long-output",
    "multilingual",
]


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 4000), max_size=20))
def test_sse_parser_is_chunking_invariant(data: bytes, cuts: list[int]) -> None:
    whole = SSEParser().feed(data)
    p = SSEParser()
    parts: list[bytes] = []
    for chunk in _chunked(data, cuts):
        parts.extend(p.feed(chunk))
    assert parts == whole


@given(
    payloads=st.lists(
        st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=20
    ),
    cuts=st.lists(st.integers(0, 4000), max_size=20),
    crlf=st.booleans(),
)
def test_sse_parser_returns_every_event(payloads: list[bytes], cuts: list[int], crlf: bool) -> None:
    nl = b"\r\n" if crlf else b"\n"
    stream = b"".join(b": keep-alive" + nl + b"data: " + x + nl + nl for x in payloads)
    p = SSEParser()
    got: list[bytes] = []
    for chunk in _chunked(stream, cuts):
        got.extend(p.feed(chunk))
    assert got == payloads and not p.pending


@given(TEXT)
def test_lineup_loader_never_crashes_on_text(text: str) -> None:
    try:
        assert isinstance(parse_lineup(text, "fuzz.yaml"), Lineup)
    except LineupError as e:
        assert str(e).startswith("fuzz.yaml")


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "name",
        "provider",
        "base_url",
        "model",
        "max_concurrency",
        "api_key_env",
        "fake",
        "proxy",
        "local",
        "price",
        "timeouts",
        "retry",
        "params",
        "headers",
    ]
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    eps=st.lists(st.dictionaries(KEYS, JSONISH, max_size=6), max_size=3),
    top=st.dictionaries(
        st.sampled_from(["reference", "defaults", "run", "audit", "datasets"]), JSONISH, max_size=3
    ),
)
def test_lineup_loader_never_crashes_on_structured_input(eps: list[dict], top: dict) -> None:
    text = yaml.safe_dump({**top, "endpoints": eps})
    try:
        parse_lineup(text, "fuzz.yaml")
    except LineupError as e:
        assert "fuzz.yaml" in str(e)


@given(TEXT)
def test_extractors_never_crash(text: str) -> None:
    n = extract_number(text)
    assert n is None or isinstance(n, float)
    c = extract_choice(text, 4)
    assert c is None or c in "ABCD"
    assert isinstance(extract_code(text, "f"), str)
    assert parse_verdict(text) in (True, False, None)
    with contextlib.suppress(ValueError):
        parse_json(text)


@given(text=TEXT, seed=st.integers(0, 10**6))
def test_instruction_checkers_never_crash(text: str, seed: int) -> None:
    import random

    r = random.Random(seed)
    for kind in (
        "min_words",
        "max_words",
        "min_sentences",
        "paragraphs",
        "bullets",
        "no_commas",
        "lowercase",
        "uppercase",
        "keywords",
        "forbidden",
        "start",
        "end",
        "json",
        "placeholders",
        "sections",
    ):
        assert Constraint(kind, _make(kind, r).args).check(text) in (True, False)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SUITES),
    index=st.integers(0, 11),
    text=TEXT,
    calls=st.lists(
        st.tuples(st.text(max_size=20), st.text(max_size=60) | JSONISH.map(json.dumps)), max_size=3
    ),
    finish=st.sampled_from(["stop", "length", "tool_calls", None]),
    prompt_tokens=st.none() | st.integers(0, 10**6),
)
def test_scorers_never_crash(name, index, text, calls, finish, prompt_tokens) -> None:
    suite = all_suites()[name]
    item = suite.items(seed=0, n=12)[index]
    result = CallResult(
        text=text,
        finish_reason=finish,
        tool_calls=[ToolCall(name=n, arguments=a) for n, a in calls],
        prompt_tokens=prompt_tokens,
    )
    scores = suite.score(item, result)
    assert scores and all(0.0 <= s.value <= 1.0 for s in scores)


# -- report and page rendering ------------------------------------------------------------------
MARKUP = st.text(
    alphabet=st.sampled_from(
        [*list("<>&\"'/=` \n\tabcscriptimgonerror()[]:javascript!-"), "é", "💥"]
    ),
    max_size=300,
)


@given(reference=MARKUP | TEXT, text=MARKUP | TEXT)
def test_word_diff_is_escaped_and_loses_nothing(reference: str, text: str) -> None:
    """The diff marks words with <ins>/<del> only; everything else is escaped text, and removing
    the marks (and what <del> shows of the reference) gives the candidate's text back exactly."""
    import html
    import re

    from bakeoff.ui._render import word_diff

    out = str(word_diff(reference, text))
    bare = re.sub(r"</?(ins|del)>", "", out)
    assert "<" not in bare and ">" not in bare  # no markup of the model's survives
    candidate = re.sub(r"<del>.*?</del>", "", out, flags=re.S)
    assert html.unescape(re.sub(r"</?ins>", "", candidate)) == text


_PAGES: dict[str, object] = {}


def _page_fixture():
    """One real run (fake providers, stored in SQLite) shared by the examples below."""
    if not _PAGES:
        import tempfile
        from pathlib import Path

        from bakeoff.store import Store
        from uirun import make_run

        db = Path(tempfile.mkdtemp(prefix="bakeoff-fuzz-ui-")) / "f.db"
        run_id = make_run(db)
        store = Store(db)
        row = store.db.execute(
            "SELECT id, suite, item_id FROM calls WHERE run_id = ? AND endpoint = 'evil'"
            " AND suite = 'arith' LIMIT 1",
            (run_id,),
        ).fetchone()
        _PAGES.update(store=store, run_id=run_id, call=row)
    return _PAGES


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=MARKUP | TEXT)
def test_pages_render_any_model_output_as_text(text: str) -> None:
    """Whatever a model writes, the item page, the call trace and the report's copy of them render
    without an exception, and the output creates no element: every tag in the page is ours."""
    from html.parser import HTMLParser

    from bakeoff.ui import Views

    f = _page_fixture()
    store, run_id, call = f["store"], f["run_id"], f["call"]
    # tags the output's text may multiply (a diff wraps its pieces in spans, ins and del) ...
    ours = {"h1", "h2", "h3", "h4", "span", "div", "a", "b", "i", "p", "nav", "pre", "table",
            "thead", "tbody", "tr", "th", "td", "section", "details", "summary", "ins", "del",
            "code", "ul", "li", "br"}  # fmt: skip

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: Counter[str] = Counter()

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.tags[tag] += 1
            for name, value in attrs:
                assert not name.startswith("on"), (tag, name)
                assert not (value or "").strip().lower().startswith("javascript"), (tag, value)

    def tags(output: str) -> dict[tuple[bool, str], Counter[str]]:
        store.db.execute(  # type: ignore[attr-defined]
            "UPDATE calls SET output_text = ?, response_raw = ? WHERE id = ?",
            (output, output, call["id"]),
        )
        out = {}
        for report in (False, True):
            v = Views(store, report=report)  # type: ignore[arg-type]
            for address in (
                f"/run/{run_id}/item?id={call['item_id']}&suite={call['suite']}",
                f"/run/{run_id}/call?id={call['id']}",
            ):
                p = Tags()
                p.feed(v.page(address).html)
                out[(report, address)] = p.tags
        return out

    plain = f.get("plain") or f.setdefault("plain", tags("plain words"))
    for page, got in tags(text).items():
        assert set(got) <= ours | set(plain[page]), set(got) - ours - set(plain[page])
        # ... and every other tag (the page's own forms, buttons, inputs, kbd) as often as with
        # plain words: the output added none
        fixed = {t: n for t, n in got.items() if t not in ours}
        assert fixed == {t: n for t, n in plain[page].items() if t not in ours}, page
