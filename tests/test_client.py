"""The wire client against real HTTP servers on loopback: the fake provider, and raw SSE scripts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bakeoff.endpoints import (
    CallError,
    CallRequest,
    ClientOptions,
    EndpointClient,
    ErrorClass,
    Timeouts,
)
from bakeoff.fake import FakeConfig, FakeServer

CHAT = CallRequest(messages=[{"role": "user", "content": "one two three four"}])


async def _call(cfg: FakeConfig, req: CallRequest = CHAT, **kw: Any):
    server = FakeServer(cfg)
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            client = EndpointClient(s, base_url=url, model="m", options=ClientOptions(**kw))
            return await client.call(req), server
    finally:
        await server.stop()


def run(coro):
    return asyncio.run(coro)


def test_streaming_chat_text_usage_and_timings():
    res, server = run(_call(FakeConfig(mode="echo", ttft_ms=40, itl_ms=10)))
    assert res.text == "one two three four"
    assert res.finish_reason == "stop"
    assert (res.prompt_tokens, res.completion_tokens, res.usage_source) == (4, 4, "usage")
    t = res.timings
    assert t.role_ms is not None and t.first_token_ms is not None
    assert t.first_token_ms >= 40
    assert len(t.token_chunk_ms) == 4
    # One timestamp per chunk, in order. The server sleeps 10 ms before each of chunks 2-4, so the
    # last cannot arrive before 40 + 3*10 ms; single gaps are not bounded below (a client that was
    # descheduled reads two chunks at once on a loaded machine — CI saw it).
    assert t.token_chunk_ms == sorted(t.token_chunk_ms)
    assert t.token_chunk_ms[-1] >= 40 + 3 * 10
    assert t.end_ms >= t.last_token_ms >= t.first_token_ms
    assert server.log[0]["stream"] is True


def test_usage_counted_from_chunks_when_not_reported():
    res, _ = run(_call(FakeConfig(mode="echo"), stream_usage=False))
    assert (res.completion_tokens, res.usage_source) == (4, "chunks")
    assert res.prompt_tokens is None


def test_max_tokens_cuts_with_length():
    req = CallRequest(messages=CHAT.messages, params={"max_tokens": 2})
    res, _ = run(_call(FakeConfig(mode="echo"), req))
    assert res.text == "one two" and res.finish_reason == "length"


def test_non_streaming_and_text_completions():
    req = CallRequest(messages=CHAT.messages, stream=False)
    res, _ = run(_call(FakeConfig(mode="fixed", reply="forty two"), req))
    assert res.text == "forty two" and res.usage_source == "usage"
    req = CallRequest(api="completions", prompt="a b c", stream=True)
    res, server = run(_call(FakeConfig(mode="echo"), req))
    assert res.text == "a b c"
    assert server.log[0]["path"] == "/v1/completions"


def test_upstream_is_recorded():
    res, _ = run(_call(FakeConfig(upstream="Together")))
    assert res.upstream == "Together"


@pytest.mark.parametrize(
    "fault,cls,detail",
    [
        ("rate_limit", ErrorClass.rate_limited, "429"),
        ("rate_limit_bare", ErrorClass.rate_limited, "429"),
        ("server_error", ErrorClass.server_error, "500"),
        ("bad_gateway", ErrorClass.server_error, "HTML"),
        ("unavailable", ErrorClass.server_error, "503"),
        ("auth", ErrorClass.auth, "401"),
        ("context", ErrorClass.context_overflow, "400"),
        ("html", ErrorClass.bad_response, "HTML page"),
        ("no_choices", ErrorClass.bad_response, "no choices"),
        ("malformed", ErrorClass.bad_response, "malformed JSON"),
        ("truncate", ErrorClass.bad_response, "before [DONE]"),
        ("reset", ErrorClass.connection_error, ""),
        ("stall", ErrorClass.timeout, "stall timeout"),
    ],
)
def test_faults_are_classified(fault, cls, detail):
    cfg = FakeConfig(mode="fixed", reply="a b c d e f", faults={fault: 1.0}, itl_ms=1)
    with pytest.raises(CallError) as e:
        run(_call(cfg, timeouts=Timeouts(stall=0.3, first_token=5)))
    assert e.value.error_class == cls
    assert detail in e.value.detail


def test_retry_after_is_parsed():
    cfg = FakeConfig(faults={"rate_limit": 1.0}, retry_after_s=1.5)
    with pytest.raises(CallError) as e:
        run(_call(cfg))
    assert e.value.retry_after == 1.5
    cfg = FakeConfig(faults={"rate_limit_bare": 1.0})
    with pytest.raises(CallError) as e:
        run(_call(cfg))
    assert e.value.retry_after is None


def test_first_token_timeout():
    with pytest.raises(CallError) as e:
        run(_call(FakeConfig(ttft_ms=2000), timeouts=Timeouts(first_token=0.2)))
    assert e.value.error_class == ErrorClass.timeout and "first_token" in e.value.detail


def test_connection_refused():
    async def go():
        async with aiohttp.ClientSession() as s:
            c = EndpointClient(s, base_url="http://127.0.0.1:9/v1", model="m")
            return await c.call(CHAT)

    with pytest.raises(CallError) as e:
        run(go())
    assert e.value.error_class == ErrorClass.connection_error


# -- raw SSE scripts: what real providers send and the fake does not ---------------------------


async def _raw(events: list[bytes], content_type: str = "text/event-stream"):
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for ev in events:
            await resp.write(ev)
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as s:
            c = EndpointClient(s, base_url=f"http://127.0.0.1:{port}/v1", model="m")
            return await c.call(CHAT)
    finally:
        await runner.cleanup()


def _ev(obj: str) -> bytes:
    return b"data: " + obj.encode() + b"\n\n"


def test_parallel_tool_calls_are_assembled_from_deltas():
    events = [
        _ev('{"choices":[{"delta":{"role":"assistant"}}]}'),
        _ev(
            '{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":'
            '{"name":"get_weather","arguments":""}}]}}]}'
        ),
        _ev(
            '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]}}]}'
        ),
        _ev(
            '{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"c2","function":'
            '{"name":"get_time","arguments":"{}"}}]}}]}'
        ),
        _ev(
            '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\\": 1}"}}]}}]}'
        ),
        _ev('{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}'),
        _ev('{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12}}'),
        b"data: [DONE]\n\n",
    ]
    res = run(_raw(events))
    assert res.finish_reason == "tool_calls"
    assert [(t.id, t.name, t.arguments) for t in res.tool_calls] == [
        ("c1", "get_weather", '{"city": 1}'),
        ("c2", "get_time", "{}"),
    ]
    assert res.timings.first_token_ms is not None and res.timings.role_ms is not None
    assert res.completion_tokens == 12


def test_reasoning_and_logprobs_and_role_chunk_is_not_a_token():
    events = [
        _ev('{"choices":[{"delta":{"role":"assistant","content":""}}]}'),
        _ev('{"choices":[{"delta":{"reasoning_content":"hmm"}}]}'),
        _ev(
            '{"choices":[{"delta":{"content":"Hi"},"logprobs":{"content":'
            '[{"token":"Hi","logprob":-0.1,"top_logprobs":[]}]}}]}'
        ),
        _ev('{"choices":[{"delta":{},"finish_reason":"stop"}]}'),
        b"data: [DONE]\n\n",
    ]
    res = run(_raw(events))
    assert res.reasoning == "hmm" and res.text == "Hi"
    assert res.logprobs == [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]
    assert len(res.timings.token_chunk_ms) == 2
    assert res.timings.role_ms is not None


def test_error_event_mid_stream():
    events = [
        _ev('{"choices":[{"delta":{"content":"Hi"}}]}'),
        _ev('{"error":{"message":"upstream overloaded","code":503}}'),
    ]
    with pytest.raises(CallError) as e:
        run(_raw(events))
    assert e.value.error_class == ErrorClass.server_error


def test_json_instead_of_stream_is_parsed():
    body = b'{"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}]}'
    res = run(_raw([body], content_type="application/json"))
    assert res.text == "ok"


def _settings(s: aiohttp.ClientSession) -> tuple[object, ...]:
    c = s.connector
    assert isinstance(c, aiohttp.TCPConnector)
    return (
        s.timeout,
        c.limit,
        c.limit_per_host,
        c._keepalive_timeout,
        c.force_close,
        c._cleanup_closed_disabled,
        c._ssl,
        c._use_dns_cache,
        c._cached_hosts._ttl,
    )


def test_open_session_gives_each_caller_the_settings_it_had():
    """`endpoints.open_session()` makes the very sessions the callers made themselves before it:
    timeout, connection cap, keep-alive, TLS and DNS cache alike."""
    from bakeoff.endpoints import open_session

    async def compare() -> None:
        before = {  # as runs/_runner, perf/_load, _preflight, discovery and local built them
            "runner": lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, ttl_dns_cache=300, enable_cleanup_closed=True
                )
            ),
            "perf": lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
            ),
            "preflight": lambda: aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10.0, sock_connect=5.0)
            ),
            "discovery": lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
            "local": lambda: aiohttp.ClientSession(),
        }
        now = {
            "runner": lambda: open_session(limit=0, dns_ttl=300, cleanup_closed=True),
            "perf": lambda: open_session(limit=0, cleanup_closed=True),
            "preflight": lambda: open_session(total=10.0, connect=5.0),
            "discovery": lambda: open_session(total=30),
            "local": lambda: open_session(),
        }
        for name, make in before.items():
            async with make() as old, now[name]() as new:
                assert _settings(new) == _settings(old), name

    run(compare())
