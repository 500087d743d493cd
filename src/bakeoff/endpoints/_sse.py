"""Incremental Server-Sent Events parser (https://html.spec.whatwg.org/#event-stream-interpretation).

Fed raw byte chunks as they arrive; yields complete events' `data` payloads. Only `data:` fields matter
to OpenAI-compatible streams; comments (`:` keep-alives), `event:`, `id:` and `retry:` are skipped.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data of every event completed by them."""
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append(b"\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                if value.startswith(b" "):
                    value = value[1:]
                self._data.append(value)
            # comments and other fields are ignored
        self._buf = buf[start:]
        return out

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are held: at end of stream, the stream was cut mid-event."""
        return bool(self._buf or self._data)
