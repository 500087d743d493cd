"""Your own data as a suite: JSONL, CSV, Parquet or a local Hugging Face `datasets` directory.

Declared in the lineup under `datasets:` (see `DatasetSpec`): a file, a field mapping, a Jinja prompt
template and a scorer (`exact`, `numeric`, `regex`, `choice` — a multiple-choice letter — `json_schema`
or `code`). A record with a missing field, or a line that does not parse, is an error naming the file
and the line (the row number for CSV and Parquet).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import jsonschema
import orjson

from bakeoff.endpoints import CallResult
from bakeoff.lineups._config import DEFAULT_PROMPT, MAX_ITEMS
from bakeoff.lineups._regex import escaped, reply_pattern
from bakeoff.suites._files import DatasetError, read_records
from bakeoff.suites._scorers import ExactMatch, NumericMatch
from bakeoff.suites._types import Item, Score
from bakeoff.suites.code import extract_code, isolation_score, run_tests
from bakeoff.suites.structured import parse_json

__all__ = ["DatasetError", "DatasetSuite", "extract_choice", "parse_verdict", "read_records"]

LETTERS = "ABCDEFGHIJ"
MAX_RENDERED = 1_000_000
"""Characters one rendered prompt may have."""


class TemplateEnv(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The environment of every user template: Jinja's sandbox (no attribute starting with `_`, no
    `__globals__`, no method that mutates), and no `*` or `**` that builds a huge value — a
    template is configuration, it never runs code or exhausts memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise jinja2.sandbox.SecurityError(f"the power {right} is too large in a template")
        if operator == "*":
            for seq, k in ((left, right), (right, left)):
                big = isinstance(seq, str | list | tuple) and isinstance(k, int)
                if big and len(seq) * k > MAX_RENDERED:
                    raise jinja2.sandbox.SecurityError(
                        f"a repetition of {len(seq) * k} items is too large in a template"
                    )
        return super().call_binop(context, operator, left, right)


def render(template: jinja2.Template, where: str, **ctx: Any) -> str:
    """Render a user template; a forbidden or oversized construct is a `DatasetError` at `where`."""
    try:
        out = template.render(**ctx)
    except jinja2.UndefinedError as e:
        raise DatasetError(f"{where}: {e.message}") from None
    except jinja2.sandbox.SecurityError as e:
        raise DatasetError(f"{where}: not allowed in a template: {e}") from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError) as e:
        raise DatasetError(f"{where}: {type(e).__name__}: {e}") from None
    if len(out) > MAX_RENDERED:
        raise DatasetError(f"{where}: renders to {len(out)} characters (at most {MAX_RENDERED})")
    return out


def _chat_messages(
    spec: Any, rec: dict[str, object], where: str
) -> tuple[list[dict[str, object]], str | None] | None:
    """A chat-format record's conversation (`messages:` names its field; a record with a
    `messages` list and no `question` is one too, under the default prompt), without its last
    assistant turn, and that turn's text; None for a templated record."""
    field = spec.messages
    if field is None:
        if spec.prompt != DEFAULT_PROMPT or spec.fields or "question" in rec:
            return None
        if not isinstance(rec.get("messages"), list):
            return None
        field = "messages"
    msgs = rec.get(field)
    if not isinstance(msgs, list) or not msgs:
        raise DatasetError(f"{where}: field {field!r} must be a non-empty list of messages")
    out = []
    for m in msgs:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m):
            raise DatasetError(f"{where}: each message needs a `role` and a `content`")
        out.append({"role": m["role"], "content": m["content"]})
    last = None
    if out[-1]["role"] == "assistant":
        last = str(out.pop()["content"])
    if not out:
        raise DatasetError(f"{where}: field {field!r} has no turn before the answer")
    return out, last


def _template_context(
    spec: Any, rec: dict[str, object], where: str
) -> tuple[dict[str, object], list[object] | None]:
    """What a record's templates see: its fields, the `fields:` mapped to their names, and with
    `choices:` the options (`choices`, and `options` lettered one a line); and the options."""
    values: dict[str, object] = {}
    for var, col in {**spec.fields}.items():
        if col not in rec:
            raise DatasetError(f"{where}: missing field {col!r} (mapped to {var!r})")
        values[var] = rec[col]
    for col in (spec.target, spec.choices, spec.id):
        if col and col not in rec:
            raise DatasetError(f"{where}: missing field {col!r}")
    ctx = {**rec, **values}
    if not spec.choices:
        return ctx, None
    opts = rec[spec.choices]
    if not isinstance(opts, list) or not 2 <= len(opts) <= len(LETTERS):
        raise DatasetError(f"{where}: field {spec.choices!r} must be a list of 2-10 options")
    ctx["choices"] = opts
    ctx["options"] = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
    return ctx, opts


def _need_target(spec: Any, target: Any, chat: bool, where: str) -> None:
    """A record its scorer cannot score without an expected answer, refused: a judge grades
    without one, and a regex scorer with a `regex:` needs none."""
    if target is not None or spec.scorer == "judge" or (spec.scorer == "regex" and spec.regex):
        return
    if chat and not spec.target:
        raise DatasetError(
            f"{where}: the conversation does not end with an assistant turn, so scorer "
            f"{spec.scorer!r} has no expected answer; end it with the answer, or name a field "
            "with `target:`"
        )
    raise DatasetError(f"{where}: field {spec.target!r} is null (scorer {spec.scorer!r} needs it)")


def extract_choice(text: str, n_options: int) -> str | None:
    """The option letter a reply picks: "Answer: B", "(B)", "B)", "**B**", "B. ..." or a lone letter."""
    letters = LETTERS[:n_options]
    t = text.replace("**", "").strip()
    pats = [
        rf"(?:answer|option|choice)\s*+(?:is|:)?\s*+\(?([{letters}])\b",
        rf"^\(?([{letters}])[).:]",
        rf"^([{letters}])$",
        rf"\(([{letters}])\)",
    ]
    for p in pats:
        m = re.search(p, t, re.I | re.M) if p.startswith("(?:") else re.search(p, t, re.M)
        if m:
            return m.group(1).upper()
    lone = re.findall(rf"\b([{letters}])\b", t)
    return lone[-1] if len(set(lone)) == 1 else None


JUDGE_PROMPT = """You are grading an answer. Decide whether the reply answers the question correctly.
{% if reference %}A correct answer is: {{ reference }}
{% endif %}
Question:
{{ question }}

Reply to grade:
{{ reply }}

Answer with one word: PASS if the reply is correct, FAIL if it is not."""


def parse_verdict(text: str) -> bool | None:
    """PASS / FAIL from a judge's reply (the last of the two words that appears), else None."""
    found = re.findall(r"\b(PASS|FAIL)\b", text.upper())
    return None if not found else found[-1] == "PASS"


class DatasetSuite:
    """A suite over the records of one dataset file."""

    tiers: tuple[str, ...] = ("all",)

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name = spec.name
        how = f"; {ExactMatch(spec.strict).rule}" if spec.scorer == "exact" else ""
        self.description = f"Your data: {spec.path} ({spec.scorer}{how})"
        self.default_size = 10**9
        env = TemplateEnv(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        try:
            self._prompt = env.from_string(spec.prompt)
            self._system = env.from_string(spec.system) if spec.system else None
        except jinja2.TemplateSyntaxError as e:
            raise DatasetError(
                f"dataset {spec.name!r}: prompt template line {e.lineno}: {e.message}"
            ) from None
        self.runs_model_code = spec.scorer == "code"
        self.linear_scoring = spec.scorer in ("exact", "numeric", "regex", "choice")
        """Scored on the event loop when short; `json_schema`'s `pattern` keywords run Python's
        backtracking `re`, so those replies are scored in the killable worker (runs._scoring)."""
        """The sandbox must be available (or --unsafe-code given) before a run starts."""
        self._records: list[Item] | None = None
        self._judge_tpl = env.from_string(spec.judge_prompt or JUDGE_PROMPT)

    def _load(self) -> list[Item]:
        if self._records is not None:
            return self._records
        spec = self.spec
        path = spec.path if spec.path.startswith("hf://") else Path(spec.path)
        items: list[Item] = []
        for where, rec in read_records(path, spec.split):
            if len(items) >= MAX_ITEMS:
                raise DatasetError(
                    f"{where}: dataset {spec.name!r} has more than {MAX_ITEMS} records "
                    "(the most one suite holds in a run); split the file"
                )
            items.append(self._item(rec, where))
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DatasetError(f"{path}: duplicate record id {dup!r} (field {spec.id!r})")
        self._records = items
        return items

    def _item(self, rec: dict[str, object], where: str) -> Item:
        """One record as an item: its conversation (given, or rendered from the templates), its
        expected answer, its id (the record's own, else a hash of its prompt)."""
        spec = self.spec
        ctx, choices = _template_context(spec, rec, where)
        chat = _chat_messages(spec, rec, where)
        target = rec[spec.target] if spec.target else None
        if chat is not None:
            msgs, last = chat
            if target is None and last is not None:
                target = last  # the record's last assistant turn is the answer
            prompt = orjson.dumps(msgs).decode()
        else:
            msgs, prompt = self._rendered(ctx, where)
        _need_target(spec, target, chat is not None, where)
        if spec.scorer == "choice" and target is not None:
            target = self._choice_target(target, choices, where)
        rid = str(rec[spec.id]) if spec.id else hashlib.sha256(prompt.encode()).hexdigest()[:12]
        return Item(
            id=f"{self.name}-{rid}",
            tier="all",
            messages=msgs,
            # the lineup's defaults unless the dataset sets its own
            params={} if spec.max_tokens is None else {"max_tokens": spec.max_tokens},
            target=target,
            meta={"line": where, "n_options": len(choices or [])},
        )

    def _rendered(self, ctx: dict[str, object], where: str) -> tuple[list[dict[str, object]], str]:
        """The conversation of a templated record: its system turn, if any, and its prompt."""
        spec = self.spec
        prompt = render(self._prompt, f"{where}: dataset {spec.name!r} prompt template", **ctx)
        at = f"{where}: dataset {spec.name!r} system template"
        system = render(self._system, at, **ctx) if self._system else None
        msgs: list[dict[str, object]] = [{"role": "system", "content": system}] if system else []
        return [*msgs, {"role": "user", "content": prompt}], prompt

    @staticmethod
    def _choice_target(target: object, opts: list[object] | None, where: str) -> str:
        if isinstance(target, int) and opts and 0 <= target < len(opts):
            return LETTERS[target]
        t = str(target).strip()
        if t.isdigit() and opts and int(t) < len(opts) and t not in [str(o) for o in opts]:
            return LETTERS[int(t)]  # an index, as CSV and string columns carry it
        if len(t) == 1 and t.upper() in LETTERS:
            return t.upper()
        if opts and t in [str(o) for o in opts]:
            return LETTERS[[str(o) for o in opts].index(t)]
        raise DatasetError(
            f"{where}: answer {target!r} is not an option letter, index or option text"
        )

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        """The records as items; `n` (the run's `limit`) of them drawn at random with `seed`,
        kept in file order (the first n rows of a sorted file are rarely a fair sample)."""
        items = self._load()
        if n is None or n >= len(items):
            return items
        keep = sorted(random.Random(f"{self.name}:{seed}").sample(range(len(items)), n))
        return [items[i] for i in keep]

    def score(self, item: Item, result: CallResult) -> list[Score]:
        kind = self.spec.scorer
        if kind == "exact":
            return [ExactMatch(self.spec.strict)(item, result)]
        if kind == "numeric":
            return [NumericMatch()(item, result)]
        if kind == "regex":
            # RE2 (lineups._regex): linear in the reply whatever the pattern
            pattern = reply_pattern(self.spec.regex or escaped(str(item.target)))
            ok = pattern.search(result.text) is not None
            return [Score(scorer="regex", value=float(ok), passed=ok)]
        if kind == "choice":
            got = extract_choice(result.text, item.meta["n_options"])
            ok = got is not None and got == item.target
            return [Score(scorer="choice", value=float(ok), passed=ok, detail=f"picked {got}")]
        if kind == "json_schema":
            schema = item.target if isinstance(item.target, dict) else json.loads(str(item.target))
            try:
                ok = jsonschema.Draft202012Validator(schema).is_valid(parse_json(result.text))
            except ValueError:
                ok = False
            return [Score(scorer="json_schema", value=float(ok), passed=ok)]
        if kind == "judge":
            raise ValueError("scorer: judge grades through the run (ascore with a judge endpoint)")
        if kind == "code":
            tests = item.target
            func = self.spec.entry_point
            cases = tests if isinstance(tests, list) else json.loads(str(tests))
            passed, total, why, isolated = run_tests(
                extract_code(result.text, func), func or "", cases
            )
            ok = passed == total and total > 0
            return [
                Score(scorer="pass", value=float(ok), passed=ok, detail=f"{passed}/{total}; {why}"),
                isolation_score(isolated),
            ]
        raise ValueError(f"unknown scorer {kind!r}")

    async def ascore(self, item: Item, result: CallResult, judge: Any = None) -> list[Score]:
        """Like `score`; `judge` (given by the runner) asks the lineup's judge endpoint, and the code
        scorer runs its sandbox off the event loop."""
        import asyncio

        if self.spec.scorer == "judge":
            if judge is None:
                raise ValueError("scorer: judge needs the run's judge endpoint")
            question = next(
                (m["content"] for m in reversed(item.messages or []) if m["role"] == "user"), ""
            )
            ctx = {**item.meta, "question": question, "reply": result.text}
            ctx["reference"] = item.target
            prompt = render(self._judge_tpl, f"dataset {self.spec.name!r} judge_prompt", **ctx)
            verdict_text = await judge(prompt)
            ok = parse_verdict(verdict_text)
            detail = f"judge {self.spec.judge}: {verdict_text.strip()[:200]}"
            if ok is None:
                detail = "judge gave no PASS/FAIL: " + verdict_text.strip()[:200]
            return [Score(scorer="judge", value=float(bool(ok)), passed=bool(ok), detail=detail)]
        return await asyncio.to_thread(self.score, item, result)
