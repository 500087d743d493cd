"""The synchronous wire: one bounded JSON POST (`post_json`), for callers that run on a thread of
their own (the audit's HTTP reference scorer). Its bounds:

- A deadline for the whole call (connect, headers, body), not per read: a server that drips a
  byte a second is cut at `timeout` seconds (a timer shuts the socket down at the deadline, so no
  single read outlives it).
- A size cap on the body (`max_bytes`): an endless answer is cut there, never read whole. An error
  status reads at most `ERROR_BYTES` of its body.
- Error bodies redacted before they are put in an exception: the key sent replaced (a key too
  short to replace safely, such as vLLM's dummy `EMPTY`, drops the body instead), any `Bearer`
  token hidden, the detail capped at `DETAIL_CHARS`.
- JSON parsed strictly (orjson: no `NaN` or `Infinity` literals).

Whatever the server does, the call ends in the parsed answer or one `PostError`.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping

import orjson

ERROR_BYTES = 4096
"""What is read of an error status's body."""
DETAIL_CHARS = 300
"""What is shown of a server's error body (after redaction)."""
SHORT_KEY = 8
"""A key shorter than this is never rewritten in a body (it could stand for ordinary text): a
body that holds it is dropped."""
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


class PostError(Exception):
    """A bounded POST did not end in a parsed JSON answer (unreachable, an error status, too large,
    too slow, not strict JSON); the message is redacted (`redacted`)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status the server answered, when it answered one other than 2xx."""


def redacted(raw: bytes | bytearray | str, secret: str | None) -> str:
    """A server's text as it may be shown: the key sent never in it, capped."""
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    if secret:
        if len(secret) < SHORT_KEY:
            if secret.lower() in text.lower():
                return "(body not shown: it may hold the key sent, too short to redact)"
        else:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = " ".join(text.split())
    return text[:DETAIL_CHARS] + ("…" if len(text) > DETAIL_CHARS else "")


def post_json(
    url: str,
    body: Mapping[str, object],
    headers: Mapping[str, str],
    *,
    timeout: float,
    max_bytes: int,
    secret: str | None,
    cap_note: str = "",
    parse: bool = True,
) -> object:
    """POST `body` as JSON; the answer parsed. Ends by `timeout` seconds, reads at most
    `max_bytes`, and raises only `PostError` (redacted, see the module docstring); `cap_note` is
    said after the cap when an answer passes it (what the cap stands for). `parse=False`: any 2xx
    answer will do (a webhook's `ok`); its first `max_bytes` are read, the rest left, and None is
    returned."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostError(f"{url}: not an http(s) URL")
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
            raise PostError(f"{url} answered {resp.status}: {detail}", resp.status)
        raw = _read(resp, max_bytes, deadline, cut=not parse)
    except _Late:
        raise _late(url, timeout) from None
    except _TooLarge:
        raise PostError(
            f"{url} answered more than {max_bytes:,} bytes{cap_note}: cut there, unread"
        ) from None
    except PostError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as e:
        if time.monotonic() >= deadline:
            raise _late(url, timeout) from None
        raise PostError(f"{url}: {type(e).__name__}: {redacted(str(e), secret)}") from None
    finally:
        timer.cancel()
        conn.close()
    return _parsed(url, raw, secret) if parse else None


def _parsed(url: str, raw: bytearray, secret: str | None) -> object:
    try:
        answer: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        start = redacted(bytes(raw[:60]), secret)
        raise PostError(
            f"{url} answered a body that is not strict JSON (an HTML page, a proxy's login, NaN "
            f"or Infinity literals?): it starts {start!r}"
        ) from None
    return answer


def _shut(conn: http.client.HTTPConnection) -> None:
    """At the deadline: wake any read blocked on the socket (it then reads the end)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _late(url: str, timeout: float) -> PostError:
    return PostError(f"{url}: no whole answer within the {timeout:g} s deadline")


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
