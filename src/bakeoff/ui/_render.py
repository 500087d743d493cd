"""Rendering helpers shared by the web app and the static report: the Jinja environment (autoescape
on, always), word-level diffs, and number formats.

Everything a model wrote reaches the page through Jinja's escaping or `escape()` here: it is shown as
text, never interpreted as markup (no markdown rendering, no raw HTML)."""

from __future__ import annotations

import difflib
import functools
import math
import re
from typing import Any
from urllib.parse import urlencode

import orjson
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup, escape

from bakeoff.store import margin_source_text

_TOKENS = re.compile(r"\s+|[^\s]+")
MAX_DIFF_TOKENS = 4000


def url(path: str, **query: Any) -> str:
    """A page's canonical address: the path plus its query sorted, None values left out. The web app
    serves it; the report uses the same string as its page key (after `#`)."""
    q = {k: v for k, v in sorted(query.items()) if v is not None and v != ""}
    return path + ("?" + urlencode(q) if q else "")


def word_diff(reference: str | None, text: str | None) -> Markup:
    """`text` with the words it adds over `reference` in <ins> and the words it drops in <del>."""
    a, b = reference or "", text or ""
    ta, tb = _TOKENS.findall(a), _TOKENS.findall(b)
    if len(ta) + len(tb) > 2 * MAX_DIFF_TOKENS:
        return Markup(escape(b))
    out: list[str] = []
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            out.append(str(escape("".join(tb[j1:j2]))))
            continue
        if op in ("delete", "replace"):
            out.append(f"<del>{escape(''.join(ta[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{escape(''.join(tb[j1:j2]))}</ins>")
    return Markup("".join(out))


def fmt_num(x: Any, nd: int = 2) -> str:
    if x is None or isinstance(x, Undefined):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def fmt_usd(x: Any) -> str:
    """Dollars to two significant digits past the zeros: $0.0000019 per correct answer, not the
    $0.00000 a fixed number of decimals printed."""
    if x is None or isinstance(x, Undefined):
        return "–"
    x = float(x)
    if x == 0 or abs(x) >= 1:
        return f"${x:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(abs(x))))
    return f"${x:.{decimals}f}"


def fmt_p(p: Any) -> str:
    if p is None or isinstance(p, Undefined):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def pretty_json(text: str | None) -> str:
    """Indented JSON if `text` parses, else the text as is."""
    if not text:
        return ""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text


def tool_calls_text(calls: Any) -> str:
    """Tool calls for reading: each one's name, then its arguments indented. Endpoints send the
    arguments as a JSON string (shown escaped on one line, it is unreadable); a string that is not
    valid JSON is shown as sent, and said to be invalid. Takes our stored shape (`name`,
    `arguments`) and OpenAI's message shape (`function: {name, arguments}`)."""
    if isinstance(calls, str):
        try:
            calls = orjson.loads(calls)
        except orjson.JSONDecodeError:
            return calls
    if not isinstance(calls, list):
        return orjson.dumps(calls, option=orjson.OPT_INDENT_2).decode()
    out = []
    for c in calls:
        if not isinstance(c, dict):
            out.append(orjson.dumps(c).decode())
            continue
        given = c.get("function")
        fn: dict[str, object] = given if isinstance(given, dict) else c
        name, args = fn.get("name"), fn.get("arguments")
        head = f"{name}" + (f"  (id {c['id']})" if c.get("id") else "")
        if isinstance(args, str):
            try:
                args = orjson.loads(args) if args.strip() else {}
            except orjson.JSONDecodeError:
                out.append(f"{head}  — arguments are not valid JSON:\n{args}")
                continue
        out.append(head + "\n" + orjson.dumps(args, option=orjson.OPT_INDENT_2).decode())
    return "\n\n".join(out)


@functools.cache
def make_env() -> Environment:
    """The one Jinja environment (templates compiled once per process; nothing per request lives
    in it)."""
    env = Environment(
        loader=PackageLoader("bakeoff.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(url=url, word_diff=word_diff, margin_source_text=margin_source_text)
    env.filters.update(
        num=fmt_num, p=fmt_p, usd=fmt_usd, pretty_json=pretty_json, tool_calls_text=tool_calls_text
    )
    return env
