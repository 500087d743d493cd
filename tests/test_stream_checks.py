"""The stream's per-event checks after they were fused into one loop (issue #35): every field of
another type than expected is still refused, with its name, on the fast path as on the slow one;
the JSON container cap still holds for a long event. Raw SSE from a real loopback server."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys

import pytest

from bakeoff.endpoints import CallError, ErrorClass
from bakeoff.endpoints._shapes import MAX_JSON_CONTAINERS
from test_client import _ev, _raw

ROLE = _ev('{"choices":[{"delta":{"role":"assistant"}}]}')
TOKEN = _ev('{"choices":[{"delta":{"content":"Hi"}}]}')
DONE = b"data: [DONE]\n\n"


def _refused(event: str) -> CallError:
    with pytest.raises(CallError) as e:
        asyncio.run(_raw([ROLE, TOKEN, _ev(event), TOKEN, DONE]))
    return e.value


@pytest.mark.parametrize(
    ("event", "message"),
    [
        # falsy values of another type: a check written `if c:` would let them through
        ('{"choices":[{"delta":{"content":0}}]}', "delta.content is a number"),
        ('{"choices":[{"delta":{"content":false}}]}', "delta.content is a boolean"),
        ('{"choices":[{"delta":{"content":[]}}]}', "delta.content is an array"),
        ('{"choices":[{"delta":{"content":{}}}]}', "delta.content is an object"),
        ('{"choices":[{"delta":{"content":42}}]}', "delta.content is a number"),
        ('{"choices":[{"delta":{"content":"x","reasoning":7}}]}', "delta.reasoning is a number"),
        ('{"choices":[{"delta":{"content":"x","tool_calls":{}}}]}', "delta.tool_calls is an obj"),
        ('{"choices":[{"delta":{"content":"x"},"logprobs":[]}]}', "logprobs is an array"),
        ('{"choices":[{"delta":"oops"}]}', "delta is a string"),
        ('{"choices":[{"delta":0}]}', "delta is a number"),
        ('{"choices":["x"]}', "choices[0] is a string"),
        ('{"choices":{"0":{}}}', "choices is an object"),
        ('{"choices":0}', "choices is a number"),
        ('[{"choices":[]}]', "stream event is not a JSON object"),
        ('"text"', "stream event is not a JSON object"),
        ('{"choices":[{"delta":{"content":"x"}}]', "malformed JSON in stream event"),
    ],
)
def test_a_field_of_another_type_is_refused_with_its_name(event: str, message: str) -> None:
    e = _refused(event)
    assert e.error_class == ErrorClass.bad_response
    assert message in str(e), str(e)


def test_an_error_object_mid_stream_is_that_error_and_a_null_one_is_none() -> None:
    e = _refused('{"error":{"message":"overloaded","code":503}}')
    assert e.error_class != ErrorClass.bad_response
    res = asyncio.run(
        _raw([ROLE, _ev('{"error":null,"choices":[{"delta":{"content":"x"}}]}'), DONE])
    )
    assert res.text == "x"


def test_the_container_cap_holds_for_a_long_event_and_a_short_one_cannot_reach_it() -> None:
    """Counting is skipped for an event shorter than the cap: each container takes at least one
    byte of `{` or `[`, so such an event cannot hold more. A longer one is still counted."""
    n = MAX_JSON_CONTAINERS + 1
    flood = '{"choices":[{"delta":{"content":"x"},"logprobs":{"content":[' + "[]," * n + "[]]}}]}"
    e = _refused(flood)
    assert e.error_class == ErrorClass.too_large and "JSON objects and arrays" in str(e)
    brackets = "{[" * ((MAX_JSON_CONTAINERS - 100) // 2)  # as text: no container at all
    res = asyncio.run(
        _raw([ROLE, _ev('{"choices":[{"delta":{"content":"' + brackets + '"}}]}'), DONE])
    )
    assert res.text == brackets


def test_the_fast_path_reads_what_the_slow_one_does() -> None:
    """Text-only deltas (the fast path) mixed with role, reasoning, tool calls and an empty
    content: the same text, tokens, role and first-token times as each event alone would give."""
    events = [
        _ev('{"choices":[{"delta":{"role":"assistant","content":""}}]}'),
        _ev('{"choices":[{"delta":{"content":""}}]}'),
        _ev('{"choices":[{"delta":{"reasoning_content":"hmm"}}]}'),
        _ev('{"choices":[{"delta":{"content":"a"}}]}'),
        _ev('{"choices":[{"delta":{"content":null,"reasoning":"r"}}]}'),
        _ev('{"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}'),
        _ev('{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}'),
        DONE,
    ]
    res = asyncio.run(_raw(events))
    assert (res.text, res.reasoning, res.finish_reason) == ("ab", "hmmr", "stop")
    assert len(res.timings.token_chunk_ms) == 4  # reasoning, a, r, b: not the role or ""
    assert res.timings.role_ms is not None and res.timings.first_token_ms is not None
    assert res.completion_tokens == 4


READS = """
import asyncio, resource, socket
import aiohttp
from bakeoff.endpoints import EndpointClient

def faults(n=2000):
    a, b = socket.socketpair()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a.send(b"x" * 100)
        b.recv(256 * 1024)  # as asyncio reads a socket
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

async def client():
    async with aiohttp.ClientSession() as s:
        EndpointClient(s, base_url="http://127.0.0.1:9", model="m")

before = faults()
asyncio.run(client())
print(before, faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_socket_reads_come_from_the_heap_once_a_client_exists() -> None:
    """asyncio reads into a fresh 256 KiB buffer: while glibc serves that as an mmap, every read
    faults fresh pages in (and maps and unmaps them). Counted in page faults, not time: 2,000
    reads of 100 bytes in a fresh process, before and after an `EndpointClient` is made."""
    out = subprocess.run(
        [sys.executable, "-c", READS], capture_output=True, text=True, check=True
    ).stdout
    before, after = map(int, out.split())
    if before < 2000:
        pytest.skip(f"this process's reads came from the heap already ({before} faults)")
    assert after < 200, (before, after)
