"""Replies hostile to the scorers: every built-in scorer is linear in the reply, a lineup's own
regex runs on RE2 (or is refused), and what is not both short and linear is scored in a process
that a deadline or a cancellation kills.

The corpus: 200,000-character replies built against each regex the scorers ran (`"=" + spaces`
held `extract_number` for good, cubic; a reply without a full stop made the sentence count
quadratic, ~10 min; blank lines made `^\\s*` rescan to the end from every line). Each is timed
against a linear baseline measured here on the same text, with a generous factor, under an alarm
that stops a scorer that overruns (Python's `re` checks signals), so the old code fails in seconds
instead of hanging."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import unicodedata
from collections.abc import Callable

import pytest

from bakeoff.endpoints import CallResult
from bakeoff.lineups import DatasetSpec, LineupError, load_lineup
from bakeoff.plugins import get_suite
from bakeoff.suites import Item
from bakeoff.suites.code import extract_code
from bakeoff.suites.datasets import DatasetSuite
from bakeoff.suites.structured import parse_json

N = 200_000


def _fill(head: str, unit: str, tail: str = "") -> str:
    body = unit * ((N - len(head) - len(tail)) // len(unit) + 1)
    return head + body[: N - len(head) - len(tail)] + tail


CORPUS = {
    "eq_spaces": _fill("=", " "),
    "eq_colon_spaces": _fill("= :", " "),
    "eq_runs": _fill("", "=" + " " * 999),
    "answer_spaces": _fill("answer", " "),
    "answer_is_spaces": _fill("answer is", " "),
    "result_spaces": _fill("result", " ", "x"),
    "many_answers": _fill("", "answer "),
    "no_full_stop": _fill("", "a"),
    "newlines": _fill("", "\n"),
    "blank_lines": _fill("", " \n"),
    "tabs_newline": _fill("\n", "\t", "x"),
    "fence_spaces": _fill("```", " ", "x"),
    "json_fence_spaces": _fill("```json", " ", "x"),
    "fence_newlines": _fill("```python\n", "\n", "def"),
    "def_spaces": _fill("```python\ndef", " ", "x"),
    "digits": _fill("", "1"),
    "numbered_digits": _fill("\n", "1", "x"),
    "numbered_bangs": _fill("1. ", "!"),
    "section_spaces": _fill("SECTION", " "),
    "stars": _fill("", "*"),
    "commas": _fill("1", ",1"),
    "brackets": _fill("", "["),
    "dashes": _fill("", "- "),
    "option_spaces": _fill("option", " "),
}


def _instructions_item() -> Item:
    """One item holding every constraint kind, so each checker sees each reply."""
    import random

    from bakeoff.suites.instructions import _make

    kinds = ["min_words", "max_words", "min_sentences", "paragraphs", "bullets", "no_commas"]
    kinds += ["lowercase", "uppercase", "keywords", "forbidden", "start", "end", "json"]
    kinds += ["placeholders", "sections"]
    r = random.Random(0)
    target = [{"kind": k, "args": _make(k, r).args} for k in kinds]
    return Item(id="all", messages=[{"role": "user", "content": "x"}], target=target)


def _scorers() -> dict[str, Callable[[str], object]]:
    out: dict[str, Callable[[str], object]] = {}

    def by_suite(suite, item):
        return lambda text: _scored(suite, item, CallResult(text=text, finish_reason="stop"))

    for name in ("arith", "math", "multilingual", "long-output", "long-context", "structured"):
        suite = get_suite(name)
        for item in suite.items(seed=0, n=3):
            out[f"{name}:{item.id}"] = by_suite(suite, item)
    out["instructions"] = by_suite(get_suite("instructions"), _instructions_item())
    out["code.extract_code"] = lambda text: extract_code(text, "f")
    out["structured.parse_json"] = lambda text: _quiet(parse_json, text)
    for scorer, extra, target in (
        ("numeric", {"target": "a"}, "7"),
        ("choice", {"target": "a", "choices": "c"}, "B"),
        ("regex", {"regex": r"^(\w+\s?)*$"}, None),  # Python's re: minutes on a 3 KB reply
        ("regex", {"regex": r"(a|aa)+$"}, None),
    ):
        spec = DatasetSpec(name="d", path="d.jsonl", prompt="{{ q }}", scorer=scorer, **extra)
        item = Item(id="r", messages=[], target=target, meta={"n_options": 4})
        out[f"dataset:{scorer}:{extra}"] = by_suite(DatasetSuite(spec), item)
    return out


def _scored(suite, item, result):
    """As the runner does: a scorer that raises (a RecursionError on 200,000 `[`) is a failed
    score, not a hang."""
    try:
        return suite.score(item, result)
    except Exception as e:
        return e


def _quiet(f, text):
    try:
        return f(text)
    except (ValueError, RecursionError):
        return None


def _linear_baseline(text: str) -> float:
    """A few linear passes like a scorer's over a reply (normalise, split, one regex scan trying
    a dozen words at each character), best of 3: the unit of the bound."""
    words = re.compile(r"answer|result|respuesta|réponse|antwort|resposta|jibu|####|=|\w+")
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        unicodedata.normalize("NFKC", text).casefold().split()
        words.findall(text)
        best = min(best, time.perf_counter() - t0)
    return best


class _Overran(BaseException):  # not a scorer's error: `_scored` lets it through
    pass


def _timed(f: Callable[[str], object], text: str, limit: float) -> float:
    """Seconds `f(text)` took; `_Overran` once it passes `limit` (the alarm interrupts a regex)."""

    def ring(signum, frame):
        raise _Overran

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, limit)
    t0 = time.perf_counter()
    try:
        f(text)
        return time.perf_counter() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_every_scorer_is_linear_on_a_hostile_200000_character_reply(case):
    """Bound per scorer: 100 times a linear baseline on the same text plus 3 s (measured here: the
    baseline 2-30 ms, the slowest scorer 0.07-0.33 s, every scorer together 0.3-2.2 s); a quadratic
    regex needs minutes at this size, the old `=` one forever. Times printed with `-s`."""
    text = CORPUS[case]
    assert len(text) == N
    base = _linear_baseline(text)
    limit = 100 * base + 3.0
    took = {}
    for name, f in _scorers().items():
        try:
            took[name] = _timed(f, text, limit)
        except _Overran:
            pytest.fail(
                f"{name} took over {limit:.2f} s on {case!r} (baseline {base * 1000:.1f} ms)"
            )
    worst = max(took, key=took.__getitem__)
    total = sum(took.values())
    print(f"{case}: base {base:.4f} s, worst {worst} {took[worst]:.3f} s, all {total:.3f} s")


def test_a_lineup_regex_that_re2_cannot_run_is_refused_with_its_line(tmp_path):
    """Backreferences and lookaround need backtracking: refused when the lineup is read, with the
    file and line, not met while scoring."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "x"}\n')
    for bad in (r"(a)\1", r"(?=a)b", r"(?<!a)b"):
        f = tmp_path / "l.yaml"
        f.write_text(
            "run: {suites: [mine]}\n"
            "endpoints:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1'}\n"
            "datasets:\n"
            f"  - {{name: mine, path: {data}, prompt: '{{{{ q }}}}', scorer: regex,\n"
            f"     regex: '{bad}'}}\n"
        )
        with pytest.raises(LineupError) as e:
            load_lineup(f)
        msg = str(e.value)
        assert f"{f}:5" in msg and "not accepted" in msg and "RE2" in msg, msg


def test_a_lineup_regex_keeps_its_meaning_on_re2():
    """Case-insensitive, `^`/`$` at each line, the target escaped when no pattern is given."""

    def ok(regex, target, text):
        spec = DatasetSpec(name="d", path="d.jsonl", prompt="{{ q }}", scorer="regex", regex=regex)
        item = Item(id="r", messages=[], target=target)
        return DatasetSuite(spec).score(item, CallResult(text=text))[0].passed

    assert ok(r"^answer: \d+$", None, "Thinking...\nANSWER: 42\nbye")
    assert not ok(r"^answer: \d+$", None, "the answer: 42")
    assert ok(None, "3.5 (approx)", "it is 3.5 (approx) I think")
    assert not ok(None, "3.5", "it is 3x5")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_score_past_the_deadline_is_score_timeout_and_nothing_keeps_running():
    """A lineup's JSON schema whose `pattern` backtracks 2^40 steps on the reply: after the
    deadline, one failed `score_timeout` score, and the worker process is gone (not left burning
    CPU); the next reply gets a fresh process and its real scores."""
    spec = DatasetSpec(name="d", path="d.jsonl", prompt="{{ q }}", scorer="json_schema", target="s")
    item = Item(id="r", messages=[], target={"type": "string", "pattern": "^(a+)+$"})
    bomb = CallResult(text='"' + "a" * 40 + '!"')
    fine = CallResult(text='"aaa"')

    from bakeoff.runs._scoring import ScoringWorker

    async def main():
        w = ScoringWorker()
        try:
            t0 = time.monotonic()
            got = await w.score("d", spec.model_dump_json(), item, bomb, timeout=3.0)
            took = time.monotonic() - t0
            assert w._proc is None
            return got, took, await w.score("d", spec.model_dump_json(), item, fine, 60.0)
        finally:
            await w.close()

    pids_before = set(_children())
    got, took, then = asyncio.run(main())
    assert [s.scorer for s in got] == ["score_timeout"] and not got[0].passed
    assert 3.0 <= took < 30, took
    assert [(s.scorer, s.passed) for s in then] == [("json_schema", True)]
    left = [p for p in _children() if p not in pids_before and _alive(p)]
    assert left == [], left


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().split(") ")[1].split()[1] == me:
                        out.append(int(d))
            except (FileNotFoundError, IndexError):
                pass
    return out


def test_the_linear_regexes_find_what_the_old_ones_found():
    """On 20,000 random short replies built from the characters each regex turns on, the
    rewritten patterns match exactly where (and what) the old backtracking ones did."""
    import random

    from bakeoff.suites import _scorers, datasets, instructions, long_output
    from bakeoff.suites import code as code_suite

    def groups(p, t, flags=0):
        pat = re.compile(p, flags) if isinstance(p, str) else p
        return [(m.span(), m.groups()) for m in pat.finditer(t)]

    old_markers = (
        r"(?:answer\s*(?:is|:)|answer is:|####|\bresult\s*(?:is|:)|respuesta es|réponse est|"
        r"antwort ist|resposta é|jibu ni|=)\s*:?\s*\**\s*([-−]?\$?\d[\d,]*(?:\.\d+)?)"
    )
    pairs = [
        (old_markers, re.I, _scorers._MARKERS),
        (r"^\s*(\d+)[.):]\s*(.*)$", re.M, long_output._LINE),
        (r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I, code_suite._FENCE),
    ]
    bits = ["a", " ", "\n", "\t", "=", ":", "*", "answer", "is", "result", "####", "1", ",", "."]
    bits += ["-", "$", "```", "python", "py", "3", "def", "(", "json", "B", "(B)", "option", ")"]
    bits += ["!", "?", "SECTION", "[x]", "\r"]
    r = random.Random(0)
    for _ in range(20_000):
        t = "".join(r.choice(bits) for _ in range(r.randint(0, 12)))
        for old, flags, new in pairs:
            want, got = groups(old, t, flags), groups(new, t)
            if new is long_output._LINE:  # the old match began on a blank line above: same groups
                want, got = [g for _, g in want], [g for _, g in got]
            assert want == got, (old, t)
        old_sents = [s for s in re.findall(r"[^.!?]+[.!?]+", t) if instructions.words(s)]
        assert instructions.sentences(t) == old_sents, t
        assert len(instructions.bullets(t)) == len(re.findall(r"^\s*[-*] \S.*$", t, re.M)), t
        sec = instructions.Constraint(
            "sections", {"n": len(re.findall(r"^\s*SECTION\s+\d+", t, re.M))}
        )
        assert sec.check(t), t
        s = t.strip()
        assert instructions._unfence(s) == re.sub(r"^```(?:json)?\s*|\s*```$", "", s), s
        old_choice = re.search(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([ABCD])\b", t, re.I)
        new_choice = re.search(r"(?:answer|option|choice)\s*+(?:is|:)?\s*+\(?([ABCD])\b", t, re.I)
        assert (old_choice and old_choice.span()) == (new_choice and new_choice.span()), t
        assert datasets.extract_choice(t, 4) in (None, "A", "B", "C", "D")
        old_json = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
        new_json = re.search(r"```(?:json)?\s*+(.*?)```", t, re.S)
        assert (old_json and old_json.groups()) == (new_json and new_json.groups()), t


def test_the_score_deadline_setting_falls_back_on_nonsense():
    from bakeoff.runs._scoring import SCORE_TIMEOUT_S, score_timeout_s

    assert score_timeout_s({"BAKEOFF_SCORE_TIMEOUT_S": "2.5"}) == 2.5
    for bad in ("", "x", "nan", "inf", "-1", "0", "1e9"):
        assert score_timeout_s({"BAKEOFF_SCORE_TIMEOUT_S": bad}) == SCORE_TIMEOUT_S, bad
