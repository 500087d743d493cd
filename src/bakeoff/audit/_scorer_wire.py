"""The HTTP reference scorer's wire: one bounded POST, and the checks every field of its answers
passes before a number reaches the analysis.

- A deadline for the whole call (connect, headers, body), not per read: a server that drips a
  byte a second is cut at `timeout` seconds (a timer shuts the socket down at the deadline, so no
  single read outlives it).
- A size cap on the body (`max_bytes`): an endless answer is cut there, never read whole. An error
  status reads at most `ERROR_BYTES` of its body.
- Error bodies redacted before they are put in an exception: the scorer's own key replaced (a key
  too short to replace safely, such as vLLM's dummy `EMPTY`, drops the body instead), any
  `Bearer` token hidden, the detail capped at `DETAIL_CHARS`.
- JSON parsed strictly (orjson: no `NaN` or `Infinity` literals); every answer's field then
  checked by type and range: finite numbers only, counts bounded by what was sent. Anything else
  is one `ReferenceScorerError` naming the field.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import re
import socket
import threading
import time
import urllib.parse
from typing import Any

import orjson

from bakeoff.audit._errors import AuditError

MAX_BODY_BYTES = 64 * 1024 * 1024
"""The default cap on an answer's body (`HttpReferenceScorer.max_body_bytes`)."""
ENTRY_BYTES = 128
"""What one token's log-probability entry may take in an answer's JSON (a log-probability, a
rank, an escaped token text: ~40-90 bytes in vLLM's and llama.cpp's answers)."""
ERROR_BYTES = 4096
"""What is read of an error status's body."""
DETAIL_CHARS = 300
"""What is shown of a server's error body (after redaction)."""
SHORT_KEY = 8
"""A key shorter than this is never rewritten in a body (it could stand for ordinary text): a
body that holds it is dropped."""
LOGPROB_SLACK = 1e-3
"""A log-probability above 0 by more than this is not one (rounding may give a hair above 0)."""
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


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


def redacted(raw: bytes | bytearray | str, secret: str | None) -> str:
    """A server's text as it may be shown: the scorer's key never in it, capped."""
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    if secret:
        if len(secret) < SHORT_KEY:
            if secret.lower() in text.lower():
                return "(body not shown: it may hold the scorer's key, too short to redact)"
        else:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = " ".join(text.split())
    return text[:DETAIL_CHARS] + ("…" if len(text) > DETAIL_CHARS else "")


def post_json(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    timeout: float,
    max_bytes: int,
    secret: str | None,
) -> Any:
    """POST `body` as JSON; the answer parsed. Ends by `timeout` seconds, reads at most
    `max_bytes`, and raises only `ReferenceScorerError` (redacted, see the module docstring)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReferenceScorerError(f"{url}: not an http(s) URL")
    deadline = time.monotonic() + timeout
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    timer = threading.Timer(timeout, _shut, (conn,))
    timer.daemon = True
    timer.start()
    try:
        conn.request(
            "POST",
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            body=orjson.dumps(body),
            headers=headers,
        )
        resp = conn.getresponse()
        if not 200 <= resp.status < 300:
            raw = _read(resp, ERROR_BYTES, deadline, cut=True)
            detail = redacted(raw, secret)
            raise ReferenceScorerError(f"{url} answered {resp.status}: {detail}", resp.status)
        raw = _read(resp, max_bytes, deadline, cut=False)
    except _Late:
        raise _late(url, timeout) from None
    except _TooLarge:
        raise ReferenceScorerError(
            f"{url} answered more than {max_bytes:,} bytes (what the tokens sent account for, "
            "at most max_body_bytes): cut there, unread"
        ) from None
    except ReferenceScorerError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as e:
        if time.monotonic() >= deadline:
            raise _late(url, timeout) from None
        raise ReferenceScorerError(
            f"{url}: {type(e).__name__}: {redacted(str(e), secret)}"
        ) from None
    finally:
        timer.cancel()
        conn.close()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        start = redacted(bytes(raw[:60]), secret)
        raise ReferenceScorerError(
            f"{url} answered a body that is not strict JSON (an HTML page, a proxy's login, NaN "
            f"or Infinity literals?): it starts {start!r}"
        ) from None


def _shut(conn: http.client.HTTPConnection) -> None:
    """At the deadline: wake any read blocked on the socket (it then reads the end)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _late(url: str, timeout: float) -> ReferenceScorerError:
    return ReferenceScorerError(f"{url}: no whole answer within the {timeout:g} s deadline")


class _Late(Exception):
    pass


class _TooLarge(Exception):
    pass


def _read(resp: http.client.HTTPResponse, limit: int, deadline: float, *, cut: bool) -> bytearray:
    """The body, read a chunk at a time up to `limit` bytes and the deadline; `cut`: what is
    beyond `limit` is left unread (an error body), else it is an error (an answer)."""
    out = bytearray()
    while True:
        chunk = resp.read1(65536)
        if time.monotonic() >= deadline:
            raise _Late
        if not chunk:
            return out
        out += chunk
        if len(out) > limit:
            if cut:
                return out[:limit]
            raise _TooLarge


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


def mapping(v: Any, field: str, bound: int) -> dict[str, Any]:
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
