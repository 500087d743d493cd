"""Reading the return values a sandboxed program reports (`call_function`), in the parent.

What the sandbox prints is untrusted: a program can write any `BAKEOFF-RETURNS` line it likes. So
this module only decodes *answers* — a value per input, or the exception raised — and never a
verdict: the caller compares them with expected values that never entered the sandbox. Decoding
builds plain built-in values only (no code runs; nesting and size are bounded), and anything
unreadable is an answer that equals nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MARK = "BAKEOFF-RETURNS "
_MAX_DEPTH = 64


class Opaque:
    """A returned value of a type the encoding does not carry: equal to nothing."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.text}>"


@dataclass
class Returned:
    """What one call of the program's function gave: a value, or the name of the exception raised."""

    value: Any = None
    raised: str | None = None


def _decode(x: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if x is None or isinstance(x, (bool, int, str)):
        return x
    d = depth + 1
    if isinstance(x, list):
        return [_decode(e, d) for e in x]
    if not isinstance(x, dict) or set(x) != {"t", "v"}:
        raise ValueError("not a tagged value")
    t, v = x["t"], x["v"]
    if t == "float" and isinstance(v, str):
        return float(v)
    if t == "tuple" and isinstance(v, list):
        return tuple(_decode(e, d) for e in v)
    if t == "set" and isinstance(v, list):
        return {_decode(e, d) for e in v}
    if t == "dict" and isinstance(v, list):
        return {_decode(k, d): _decode(e, d) for k, e in v}
    if t == "bytes" and isinstance(v, str):
        return bytes.fromhex(v)
    if t == "opaque":
        return Opaque(str(v)[:200])
    raise ValueError(f"unknown tag {t!r}")


def _one(rec: Any) -> Returned:
    if isinstance(rec, dict) and set(rec) == {"raised"}:
        return Returned(raised=str(rec["raised"])[:100])
    if isinstance(rec, dict) and set(rec) == {"value"}:
        try:
            return Returned(value=_decode(rec["value"]))
        except (ValueError, TypeError, RecursionError, MemoryError):
            return Returned(value=Opaque("unreadable value"))
    return Returned(value=Opaque("unreadable record"))


def parse_returns(stdout: str, n: int) -> list[Returned] | None:
    """The `n` answers of the last `BAKEOFF-RETURNS` line on stdout, or None when there is no such
    line holding exactly `n` records."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        return None
    try:
        records = json.loads(lines[-1][len(MARK) :])
    except (ValueError, RecursionError):
        return None
    if not isinstance(records, list) or len(records) != n:
        return None
    return [_one(r) for r in records]
