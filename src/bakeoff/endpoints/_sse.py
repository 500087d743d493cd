"""Incremental Server-Sent Events parser (https://html.spec.whatwg.org/#event-stream-interpretation).

Fed raw byte chunks as they arrive; yields complete events' `data` payloads. Only `data:` fields matter
to OpenAI-compatible streams; comments (`:` keep-alives), `event:`, `id:` and `retry:` are skipped.

Linear in the bytes fed, whatever their split: an unfinished line is kept in one growing buffer and
searched for its newline only from where the last search stopped. One line and one event are capped;
past a cap the parser raises `SSELimitError` instead of holding more.
"""

from __future__ import annotations

MAX_LINE_BYTES = 8_000_000
"""One line of the stream (a `data:` line carries one JSON event of an OpenAI stream)."""
MAX_EVENT_BYTES = 8_000_000
"""One event: the sum of its `data:` lines."""


class SSELimitError(ValueError):
    """A line or an event passed its cap."""


class SSEParser:
    __slots__ = ("_buf", "_data", "_data_size", "_scanned", "max_event", "max_line")

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._scanned = 0
        """Bytes at the head of `_buf` already known to hold no newline."""
        self._data: list[bytes] = []
        self._data_size = 0
        self.max_line = max_line
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data of every event completed by them."""
        buf = self._buf
        buf += chunk
        out: list[bytes] = []
        start = 0
        nl = buf.find(b"\n", self._scanned)
        while nl >= 0:
            end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl  # "\r\n"
            if end == start:
                if self._data:
                    out.append(b"\n".join(self._data))
                    self._data = []
                    self._data_size = 0
            elif buf.startswith(b"data:", start):
                value = bytes(buf[start + 5 : end])
                if value.startswith(b" "):
                    value = value[1:]
                self._data_size += len(value) + 1
                if self._data_size > self.max_event:
                    raise SSELimitError(f"one stream event passed {self.max_event:,} bytes")
                self._data.append(value)
            # comments and other fields are ignored
            start = nl + 1
            nl = buf.find(b"\n", start)
        if start:
            del buf[:start]
        if len(buf) > self.max_line:
            raise SSELimitError(f"one stream line passed {self.max_line:,} bytes")
        self._scanned = len(buf)
        return out

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are held: at end of stream, the stream was cut mid-event."""
        return bool(self._buf or self._data)
