"""The HTTP reference scorer's answers: the checks every field passes before a number reaches the
analysis. (Each answer comes by one bounded POST, `bakeoff.endpoints.post_json`: a deadline over
the whole call, a size cap on the body, error bodies redacted, strict JSON — its bounds are listed
there.)

- The body's cap for a scoring answer is what the tokens sent can justify (`answer_bytes`), at
  most `HttpReferenceScorer.max_body_bytes` (`MAX_BODY_BYTES`).
- Every answer's field is checked by type and range: finite numbers only, counts bounded by what
  was sent. Anything else is one `ReferenceScorerError` naming the field (a failed call is one
  too: `HttpReferenceScorer._post`).
"""

from __future__ import annotations

import math
from typing import Any

from bakeoff.audit._errors import AuditError

MAX_BODY_BYTES = 64 * 1024 * 1024
"""The default cap on an answer's body (`HttpReferenceScorer.max_body_bytes`)."""
ENTRY_BYTES = 128
"""What one token's log-probability entry may take in an answer's JSON (a log-probability, a
rank, an escaped token text: ~40-90 bytes in vLLM's and llama.cpp's answers)."""
LOGPROB_SLACK = 1e-3
"""A log-probability above 0 by more than this is not one (rounding may give a hair above 0)."""


class ReferenceScorerError(AuditError):
    """The reference scorer's server cannot score (unreachable, no echo/logprobs, no template, an
    answer not in the shape its engine documents, too large, too slow): an audit error, so a run
    stops with it (the calls made so far are kept) and `bakeoff audit --rerun` reports it."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status the server answered, when it answered one other than 2xx."""


def answer_bytes(tokens: int, k: int) -> int:
    """The most an answer scoring `tokens` tokens with top-`k` lists may take: each token's own
    entry and k + 1 alternatives at `ENTRY_BYTES` each, plus 64 KB of the rest."""
    return 65536 + tokens * (max(k, 0) + 2) * ENTRY_BYTES


# -- the checks --------------------------------------------------------------------------------------
def _what(v: Any) -> str:
    s = repr(v)
    return f"{s[:40]}{'…' if len(s) > 40 else ''} (type {type(v).__name__})"


def refuse(field: str, v: Any, want: str) -> ReferenceScorerError:
    return ReferenceScorerError(f"the scorer's answer: {field} is {_what(v)}, not {want}")


def finite(v: Any, field: str) -> float:
    """A finite number (a bool, a string, NaN or ±inf is refused)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if math.isfinite(f):
            return f
    raise refuse(field, v, "a finite number")


def logprob(v: Any, field: str) -> float:
    """A log-probability: finite, ≤ 0 (up to `LOGPROB_SLACK`)."""
    f = finite(v, field)
    if f > LOGPROB_SLACK:
        raise refuse(field, v, "a log-probability (≤ 0)")
    return min(f, 0.0)


def count(v: Any, field: str, bound: int, *, low: int = 0) -> int:
    """An integer in [low, bound] (`bound`: what was sent allows)."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise refuse(field, v, "an integer")
    if not low <= v <= bound:
        raise refuse(field, v, f"a count in [{low}, {bound}] (bounded by what was sent)")
    return v


def listed(v: Any, field: str, bound: int) -> list[Any]:
    """A list of at most `bound` items."""
    if not isinstance(v, list):
        raise refuse(field, v, "a list")
    if len(v) > bound:
        raise refuse(field, f"a list of {len(v)}", f"at most {bound} items (what was sent)")
    return v


def mapping(v: Any, field: str, bound: int) -> dict[str, object]:
    """An object of at most `bound` keys."""
    if not isinstance(v, dict):
        raise refuse(field, v, "an object")
    if len(v) > bound:
        raise refuse(field, f"an object of {len(v)} keys", f"at most {bound} (top-k + 1)")
    return v


def string(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise refuse(field, v, "a string")
    return v


def max_tokens_of(s: str, slack: int = 16) -> int:
    """The most tokens a text can be (a token is at least a byte of it) plus special tokens."""
    return len(s.encode("utf-8", "surrogatepass")) + slack
