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
