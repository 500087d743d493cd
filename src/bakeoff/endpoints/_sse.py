"""Incremental Server-Sent Events parser (https://html.spec.whatwg.org/#event-stream-interpretation).

Fed raw byte chunks as they arrive; yields complete events' `data` payloads. Only `data:` fields matter
to OpenAI-compatible streams; comments (`:` keep-alives), `event:`, `id:` and `retry:` are skipped.

Linear in the bytes fed, whatever their split: a read with no newline is appended to the unfinished
line and searched once, alone; a read that ends the line is joined to it once and split into lines
in C (`bytes.split`), the Python loop touching each line once. One line and one event are capped;
past a cap the parser raises `SSELimitError` instead of holding more.

The common read (no `\r`, no event begun in an earlier read) is split at its blank lines instead, so
an event of one `data: ` line, as OpenAI-compatible servers send them, costs one loop step, not two
(tests/test_sse.py checks it against a line-by-line reading, whatever the split).
"""

from __future__ import annotations

MAX_LINE_BYTES = 8_000_000
"""One line of the stream (a `data:` line carries one JSON event of an OpenAI stream)."""
MAX_EVENT_BYTES = 8_000_000
"""One event: the sum of its `data:` lines."""


class SSELimitError(ValueError):
    """A line or an event passed its cap."""


class SSEParser:
    __slots__ = ("_buf", "_data", "_data_size", "max_event", "max_line")

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        """The unfinished line: bytes known to hold no newline."""
        self._data: list[bytes] = []
        self._data_size = 0
        self.max_line = max_line
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data of every event completed by them."""
        if b"\n" not in chunk:  # no line ends in this read: only it is searched
            buf = self._buf
            buf += chunk
            if len(buf) > self.max_line:
                raise SSELimitError(f"one stream line passed {self.max_line:,} bytes")
            return []
        if self._buf:
            self._buf += chunk
            chunk = bytes(self._buf)
            self._buf.clear()
        out: list[bytes] = []
        if self._data or b"\r" in chunk:
            lines = chunk.split(b"\n")
        else:  # the common case: events of one `data: ` line each, one item per event
            blocks = chunk.split(b"\n\n")
            lines = blocks.pop().split(b"\n")  # after the last blank line: an event not ended
            max_event = self.max_event
            for block in blocks:
                if block[:6] == b"data: " and b"\n" not in block:
                    if len(block) - 5 > max_event:
                        raise SSELimitError(f"one stream event passed {max_event:,} bytes")
                    out.append(block[6:])
                else:  # several lines (fields, comments, several data lines), then a blank one
                    self._lines([*block.split(b"\n"), b""], out)
        rest = lines.pop()  # after the last newline: the next line's start
        self._lines(lines, out)
        if rest:
            if len(rest) > self.max_line:
                raise SSELimitError(f"one stream line passed {self.max_line:,} bytes")
            self._buf += rest
        return out

    def _lines(self, lines: list[bytes], out: list[bytes]) -> None:
        """Complete lines, in order: each event they end is added to `out`."""
        data = self._data
        size = self._data_size
        max_event = self.max_event
        for line in lines:
            if line[-1:] == b"\r":  # "\r\n"
                line = line[:-1]
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = []
                    size = 0
            elif line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                size += len(value) + 1
                if size > max_event:
                    raise SSELimitError(f"one stream event passed {max_event:,} bytes")
                data.append(value)
            # comments and other fields are ignored
        self._data = data
        self._data_size = size

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are held: at end of stream, the stream was cut mid-event."""
        return bool(self._buf or self._data)
