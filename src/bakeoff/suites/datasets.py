"""Your own data as a suite: JSONL, CSV, Parquet or a local Hugging Face `datasets` directory.

Declared in the lineup under `datasets:` (see `DatasetSpec`): a file, a field mapping, a Jinja prompt
template and a scorer (`exact`, `numeric`, `regex`, `choice` — a multiple-choice letter — `json_schema`
or `code`). A record with a missing field, or a line that does not parse, is an error naming the file
and the line (the row number for CSV and Parquet).
"""

from __future__ import annotations

import csv
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
from bakeoff.suites._scorers import ExactMatch, NumericMatch
from bakeoff.suites._types import Item, Score
from bakeoff.suites.code import extract_code, isolation_score, run_tests
from bakeoff.suites.structured import parse_json

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


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and line in the message."""


Records = list[tuple[str, dict[str, Any]]]
"""(where, record) pairs: `where` is `file:line` (or `file:row N` for columnar files)."""


def _read_jsonl(path: Path) -> Records:
    out = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON: {e}") from None
            if not isinstance(rec, dict):
                raise DatasetError(f"{path}:{n}: a record must be a JSON object")
            out.append((f"{path}:{n}", rec))
    return out


def _read_json(path: Path) -> Records:
    """A `.json` file: an array of records (each named by the line it starts on), or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    out: Records = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DatasetError(f"{path}: the JSON array is not closed")
        if text[pos] == "]":
            return out
        line = text.count("\n", 0, pos) + 1
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{line}: not valid JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}:{line}: a record must be a JSON object")
        out.append((f"{path}:{line}", rec))


def _read_csv(path: Path) -> Records:
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for rec in reader:
            if None in rec or any(v is None for v in rec.values()):
                raise DatasetError(f"{path}:{reader.line_num}: wrong number of columns")
            out.append((f"{path}:{reader.line_num}", dict(rec)))
    return out


def _read_arrow_table(table: Any, path: Path, start: int = 0) -> Records:
    return [(f"{path}:row {start + i + 1}", rec) for i, rec in enumerate(table.to_pylist())]


def _read_parquet(path: Path) -> Records:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow (pip install 'bakeoff[parquet]')"
        ) from None
    try:
        return _read_arrow_table(pq.read_table(path), path)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable Parquet file: {e}") from None


def _read_hf_dir(path: Path, split: str | None) -> Records:
    """A directory written by `datasets.Dataset.save_to_disk` (arrow files + state.json), a
    DatasetDict directory (one such directory per split), or a folder of data files — every one
    of them, in name order (shards)."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        chosen = split or ("test" if "test" in splits else splits[0])
        if chosen not in splits:
            raise DatasetError(f"{path}: no split {chosen!r}; available: {', '.join(splits)}")
        return _read_hf_dir(path / chosen, None)
    if (path / "state.json").exists():
        try:
            import pyarrow as pa
        except ImportError:
            raise DatasetError(f"{path}: reading a datasets directory needs pyarrow") from None
        state = json.loads((path / "state.json").read_text())
        rows: Records = []
        for f in state.get("_data_files", []):
            fp = path / f["filename"]
            with pa.memory_map(str(fp)) as src:
                table = pa.ipc.open_stream(src).read_all()
            rows += _read_arrow_table(table, fp)
        return rows
    kinds = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in kinds)
    if split:
        files = [p for p in files if split in p.name or split in p.parent.name]
    if not files:
        raise DatasetError(
            f"{path}: no dataset files (state.json, *.jsonl, *.json, *.csv, *.parquet) found"
        )
    return [r for f in files for r in read_records(f)]


def _read_hub(name: str, split: str | None) -> Records:
    """`hf://org/name`: a dataset on the Hugging Face hub (online machines only)."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            f"hf://{name}: reading from the hub needs `pip install datasets`"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split or "test")
    except Exception as e:  # offline, unknown id, no such split: one line, not a traceback
        raise DatasetError(
            f"hf://{name}: cannot load it from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e)[:200]}); on an offline machine, `save_to_disk` it elsewhere and give the folder"
        ) from None
    return [(f"hf://{name}:row {i + 1}", dict(rec)) for i, rec in enumerate(ds)]


def read_records(path: Path | str, split: str | None = None) -> Records:
    """(`file:line`, record) pairs of a dataset file, a directory of shards, a glob
    (`data/train-*.parquet`: every match, in name order), or `hf://org/name` (the hub)."""
    if str(path).startswith("hf://"):
        return _read_hub(str(path)[5:], split)
    path = Path(path)
    if any(c in path.name for c in "*?[") and not path.exists():
        matches = sorted(path.parent.glob(path.name))
        if not matches:
            raise DatasetError(f"{path}: no file matches")
        return [r for m in matches for r in read_records(m, split)]
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_hf_dir(path, split)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DatasetError(
        f"{path}: unknown format (use .jsonl, .csv, .parquet or a datasets directory)"
    )


def _chat_messages(
    spec: Any, rec: dict[str, Any], where: str
) -> tuple[list[dict[str, Any]], str | None] | None:
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
        self.description = f"Your data: {spec.path} ({spec.scorer})"
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
            values: dict[str, Any] = {}
            for var, col in {**spec.fields}.items():
                if col not in rec:
                    raise DatasetError(f"{where}: missing field {col!r} (mapped to {var!r})")
                values[var] = rec[col]
            for col in (spec.target, spec.choices, spec.id):
                if col and col not in rec:
                    raise DatasetError(f"{where}: missing field {col!r}")
            ctx = {**rec, **values}
            if spec.choices:
                opts = rec[spec.choices]
                if not isinstance(opts, list) or not 2 <= len(opts) <= len(LETTERS):
                    raise DatasetError(
                        f"{where}: field {spec.choices!r} must be a list of 2-10 options"
                    )
                ctx["choices"] = opts
                ctx["options"] = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
            chat = _chat_messages(spec, rec, where)
            target = rec[spec.target] if spec.target else None
            if chat is not None:
                msgs, last = chat
                if target is None and last is not None:
                    target = last  # the record's last assistant turn is the answer
                prompt = orjson.dumps(msgs).decode()
            else:
                prompt = render(
                    self._prompt, f"{where}: dataset {spec.name!r} prompt template", **ctx
                )
                at = f"{where}: dataset {spec.name!r} system template"
                system = render(self._system, at, **ctx) if self._system else None
                msgs = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": prompt}
                ]
            if spec.scorer == "choice" and target is not None:
                target = self._choice_target(target, ctx.get("choices"), where)
            rid = str(rec[spec.id]) if spec.id else hashlib.sha256(prompt.encode()).hexdigest()[:12]
            items.append(
                Item(
                    id=f"{self.name}-{rid}",
                    tier="all",
                    messages=msgs,
                    # the lineup's defaults unless the dataset sets its own
                    params={} if spec.max_tokens is None else {"max_tokens": spec.max_tokens},
                    target=target,
                    meta={"line": where, "n_options": len(ctx.get("choices") or [])},
                )
            )
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DatasetError(f"{path}: duplicate record id {dup!r} (field {spec.id!r})")
        self._records = items
        return items

    @staticmethod
    def _choice_target(target: Any, opts: list[Any] | None, where: str) -> str:
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
            return [ExactMatch()(item, result)]
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
