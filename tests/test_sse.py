from hypothesis import given
from hypothesis import strategies as st

from bakeoff.endpoints import SSEParser

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\ndata: two\r\ndata: lines\r\n\r\n"
    b"id: 7\ndata:nospace\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"two\nlines", b"nospace", b"[DONE]"]


def test_events_in_one_chunk():
    assert SSEParser().feed(STREAM) == EXPECTED


def test_byte_by_byte():
    p = SSEParser()
    out = []
    for i in range(len(STREAM)):
        out += p.feed(STREAM[i : i + 1])
    assert out == EXPECTED
    assert not p.pending


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts):
    cuts = sorted(set(cuts))
    p = SSEParser()
    out, prev = [], 0
    for c in [*cuts, len(STREAM)]:
        out += p.feed(STREAM[prev:c])
        prev = c
    assert out == EXPECTED


def test_cut_mid_event_is_pending():
    p = SSEParser()
    assert p.feed(b'data: {"a":') == []
    assert p.pending


@given(st.binary(max_size=300))
def test_never_crashes_on_garbage(data):
    SSEParser().feed(data)


def _reference(stream: bytes) -> tuple[list[bytes], bool]:
    """The stream read line by line, as the spec says (a line ends at `\\n`, a `\\r` before it
    dropped; a blank line ends the event of the `data:` lines before it): the events, and
    whether an unfinished one is held at the end."""
    *lines, rest = stream.split(b"\n")
    out: list[bytes] = []
    data: list[bytes] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        if not line:
            if data:
                out.append(b"\n".join(data))
                data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    return out, bool(rest or data)


PIECES = [b"data: ", b"data:", b"data:  ", b": ping", b"id: 1", b"event: e", b"x", b"{}", b"[DONE]"]
PIECES += [b"\n", b"\n\n", b"\r\n", b"\r", b"\n\n\n", b"data: \n\n", b"data: {}\n\n"]


@given(
    st.lists(st.sampled_from(PIECES), max_size=40),
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_the_one_line_event_fast_path_reads_as_the_spec_says(pieces, cuts):
    """Whole, or split anywhere (a read that starts mid-event takes the line-by-line path): the
    events and the pending state of the reference reading."""
    stream = b"".join(pieces)
    p = SSEParser()
    out, prev = [], 0
    for c in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        out += p.feed(stream[prev:c])
        prev = c
    assert (out, p.pending) == _reference(stream)
