"""A lineup's own regular expression (`scorer: regex`), compiled by RE2: an automaton without
backtracking, so matching is linear in the reply whatever the pattern (`'^(\\w+\\s?)*$'` held
Python's `re` for minutes on a 3 KB reply). A pattern RE2 cannot compile (backreferences,
lookaround) is refused when the lineup is read."""

from __future__ import annotations

from functools import cache
from typing import Any

import re2

RE2_SYNTAX = "RE2 syntax: no backreferences or lookaround; \\w, \\d and \\b are ASCII"


@cache
def reply_pattern(pattern: str) -> Any:
    """`pattern` compiled for searching a reply, case-insensitive and multi-line (`^`, `$` at each
    line) like the scorer always was; `ValueError` naming what RE2 refused."""
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False
    try:
        return re2.compile("(?m)" + pattern, opts)
    except re2.error as e:
        why = e.args[0] if e.args else e
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise ValueError(f"regex {pattern[:200]!r} not accepted ({RE2_SYNTAX}): {why}") from None


def escaped(text: str) -> str:
    """A literal `text` as an RE2 pattern."""
    return str(re2.escape(text))
