"""Load lineup YAML into `Lineup`, with errors that name the file, line and field."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bakeoff.lineups._config import Lineup

Loc = tuple[str | int, ...]

MAX_VALUES = 100_000
"""Values a lineup may expand to, aliases counted at each use: a 384-byte file of nine nested
aliases expands to 10^9 (a billion laughs) — refused at the first value over the cap."""
MAX_CHARS = 8_000_000
"""Characters of scalar text a lineup may expand to (a long string reused by alias is counted at
each use: each use is a copy)."""
MAX_FILE_BYTES = 4_000_000


class LineupError(Exception):
    """A lineup that cannot be used. `str()` is the message to show, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class FieldProblems(ValueError):
    """Raised by a `resolve` step of `parse_lineup` (a check that needs what the lineup layer
    cannot know, such as the registered providers): (data path, message) pairs, each reported
    with the line of its field."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


class _NodeError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _scalar(node: yaml.Node) -> Any:
    """A node resolved the way safe_load would; a value YAML cannot build is a `_NodeError`."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (yaml.YAMLError, ValueError, TypeError) as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise _NodeError(node.start_mark.line + 1, f"invalid YAML value: {problem}") from None


class _Budget:
    """What is left of `MAX_VALUES` and `MAX_CHARS` while a lineup is built."""

    def __init__(self) -> None:
        self.values, self.chars = MAX_VALUES, MAX_CHARS
        self.scalars: dict[int, Any] = {}
        """Resolved scalars by node identity: an alias is the same node, resolved once."""

    def spend(self, node: yaml.Node) -> None:
        self.values -= 1
        if isinstance(node, yaml.ScalarNode):
            self.chars -= len(node.value)
        if self.values < 0 or self.chars < 0:
            what = f"{MAX_VALUES} values" if self.values < 0 else f"{MAX_CHARS} characters"
            raise _NodeError(
                node.start_mark.line + 1,
                f"the lineup expands to more than {what} (aliases count at each use: "
                "nested `*alias` references multiply)",
            )


def _to_python(node: yaml.Node, path: Loc, lines: dict[Loc, int], budget: _Budget) -> Any:
    """Build plain data from a composed YAML node, recording each path's line (1-based)."""
    budget.spend(node)
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = _scalar(k) if not isinstance(k, yaml.ScalarNode) else k.value
            if not isinstance(key, str | int):
                # YAML allows lists, mappings, floats and null as keys; a lineup never needs them
                raise _NodeError(k.start_mark.line + 1, "a mapping key must be a name or a number")
            lines[(*path, key)] = k.start_mark.line + 1
            out[key] = _to_python(v, (*path, key), lines, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines, budget) for i, v in enumerate(node.value)]
    # scalars: resolve the tag the way safe_load would (immutable values: shared by aliases)
    if id(node) not in budget.scalars:
        budget.scalars[id(node)] = _scalar(node)
    return budget.scalars[id(node)]


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while True:
        if loc in lines:
            return lines[loc]
        if not loc:
            return None
        loc = loc[:-1]


def _fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_lineup(
    text: str | Mapping[str, object],
    source: str = "<lineup>",
    *,
    resolve: Callable[[Lineup], Lineup] | None = None,
) -> Lineup:
    """Parse lineup YAML text, or a dict as YAML would give it (checked the same way, written out
    as YAML: the lines named are that text's). Raises `LineupError` naming `source`, line and
    field. `resolve`, if given, completes the validated lineup; its `FieldProblems` are reported
    the same way."""
    text = _yaml_text(text, source)
    data, lines = _tree(_compose(text, source), source)
    try:
        lineup = Lineup.model_validate(data)
        return resolve(lineup) if resolve is not None else lineup
    except FieldProblems as e:
        raise LineupError(
            [
                f"{source}:{_line_for(loc, lines) or '?'}: {_fmt_loc(loc)}: {msg}"
                for loc, msg in e.problems
            ]
        ) from None
    except ValidationError as e:
        raise LineupError(_validation_problems(e, data, lines, source)) from None


def _yaml_text(text: object, source: str) -> str:
    """The lineup's YAML text: a dict written out as YAML; anything else but text refused; a text
    past `MAX_FILE_BYTES` refused before it is parsed."""
    if isinstance(text, Mapping):
        try:
            text = yaml.safe_dump(dict(text), sort_keys=False, allow_unicode=True)
        except yaml.YAMLError as e:
            raise TypeError(f"parse_lineup: the dict holds a value YAML cannot hold: {e}") from None
    if not isinstance(text, str):
        raise TypeError(
            f"parse_lineup takes the lineup's YAML text or a dict, not {type(text).__name__}"
            " (a file: bakeoff.load_lineup(path))"
        )
    if len(text) > MAX_FILE_BYTES:
        raise LineupError(
            [f"{source}:1: the lineup is {len(text)} characters; at most {MAX_FILE_BYTES}"]
        )
    return text


def _compose(text: str, source: str) -> yaml.Node:
    """The YAML node tree (no object built yet), or a `LineupError` naming the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else "?"
        raise LineupError([f"{source}:{line}: invalid YAML: {e.problem}"]) from None
    except yaml.YAMLError as e:  # e.g. a character YAML does not allow
        pos = getattr(e, "position", None)
        line = text[:pos].count("\n") + 1 if isinstance(pos, int) else "?"
        reason = getattr(e, "reason", None) or str(e).splitlines()[0]
        raise LineupError([f"{source}:{line}: invalid YAML: {reason}"]) from None
    if node is None:
        raise LineupError([f"{source}:1: the lineup is empty; it needs an `endpoints:` list"])
    return node


def _tree(node: yaml.Node, source: str) -> tuple[dict[str, object], dict[Loc, int]]:
    """The mapping the node holds (within `_Budget`) and the line of each of its paths."""
    lines: dict[Loc, int] = {}
    try:
        data = _to_python(node, (), lines, _Budget())
    except _NodeError as e:
        raise LineupError([f"{source}:{e.line}: {e.message}"]) from None
    if not isinstance(data, dict):
        raise LineupError([f"{source}:1: a lineup is a mapping with an `endpoints:` list"])
    return data, lines


def _validation_problems(
    e: ValidationError, data: dict[str, object], lines: dict[Loc, int], source: str
) -> list[str]:
    """One `source:line: field: message` per pydantic error."""
    problems = []
    for err in e.errors():
        loc: Loc = tuple(err["loc"])
        # pydantic puts tagged-union / validator names in loc; keep only the data path
        data_loc = _data_path(data, loc)
        lineno = _line_for(data_loc, lines)
        msg = err["msg"].removeprefix("Value error, ")
        field = _fmt_loc(data_loc if err["type"] != "missing" else loc)
        problems.append(f"{source}:{lineno or '?'}: {field}: {msg}")
    return problems


def _data_path(data: Any, loc: Loc) -> Loc:
    """The longest prefix of `loc` that exists in the data (missing fields point at their parent)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if not (in_dict or in_list):
            break
        cur = cur[part]
        out.append(part)
    return tuple(out)


def load_lineup(
    path: str | os.PathLike[str], *, resolve: Callable[[Lineup], Lineup] | None = None
) -> Lineup:
    """Read and validate a lineup file (`resolve`: see `parse_lineup`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LineupError([f"{p}: no such lineup file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise LineupError([f"{p}: cannot read: {e}"]) from None
    lineup = parse_lineup(text, str(p), resolve=resolve)
    # resolve relative paths against the lineup file
    for ep in lineup.endpoints:
        if ep.fake and ep.fake.script_file and not Path(ep.fake.script_file).is_absolute():
            ep.fake.script_file = str((p.parent / ep.fake.script_file).resolve())
    for ds in lineup.datasets:
        if not ds.path.startswith("hf://") and not Path(ds.path).is_absolute():
            ds.path = str((p.parent / ds.path).resolve())
    if lineup.audit.prompts and not Path(lineup.audit.prompts).is_absolute():
        lineup.audit.prompts = str((p.parent / lineup.audit.prompts).resolve())
    tpl = lineup.audit.scorer_template  # a file's name, not the Jinja text itself
    if tpl and "{{" not in tpl and "{%" not in tpl and not Path(tpl).expanduser().is_absolute():
        lineup.audit.scorer_template = str((p.parent / tpl).resolve())
    return lineup


def missing_env(lineup: Lineup, environ: dict[str, str] | None = None) -> list[str]:
    """Endpoints whose `api_key_env` variable is unset or empty, as messages."""
    env = os.environ if environ is None else environ
    return [
        f"endpoint {ep.name!r}: environment variable {ep.api_key_env} is not set"
        for ep in lineup.endpoints
        if ep.api_key_env and not env.get(ep.api_key_env)
    ]
