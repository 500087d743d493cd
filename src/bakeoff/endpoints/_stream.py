"""One streamed reply, event by event: the text, reasoning, tool calls and logprobs it carries, and
the time each token-bearing event arrived."""

from __future__ import annotations

import io
from array import array

import orjson

from bakeoff.endpoints._shapes import (
    MAX_JSON_CONTAINERS,
    MAX_LOGPROB_ENTRIES,
    _apply_usage,
    _completion_logprobs,
    _dict,
    _json_object,
    _label,
    _list,
    _logprobs,
    _merge_tool_delta,
    _text,
    _ToolParts,
    usage_of,
)
from bakeoff.endpoints._sse import SSELimitError, SSEParser
from bakeoff.endpoints._types import CallError, CallResult, ErrorClass, JsonObject, Timings

MAX_RAW_BYTES = 1_000_000
"""Raw responses stored beyond this size are cut (and say so)."""


class StreamReader:
    """The state of one streamed attempt. `feed` each socket read with its arrival stamp, then
    `finish`. `phase` names the deadline the attempt is under (`first_token`, then `stall`), for
    the timeout's message.

    Compact while the stream lasts (a 16 MB stream is ~250,000 chunks): 8 bytes a stamp and one
    buffer of text, instead of a float and a str object per chunk (~40 MB a call)."""

    def __init__(
        self, t0: int, *, is_chat: bool, max_event: int, upstream_field: str | None
    ) -> None:
        self.t0 = t0
        self.is_chat = is_chat
        self.upstream_field = upstream_field
        self.parser = SSEParser(max_line=max_event, max_event=max_event)
        self.timings = Timings(sent_ns=t0)
        self.result = CallResult(timings=self.timings)
        self.phase = "first_token"
        self.first_token_seen = False
        self.done = False
        self.chunk_ms = array("d")
        self.text = io.StringIO()
        self.reasoning = io.StringIO()
        self.tools: dict[int, _ToolParts] = {}
        self.logprobs: list[JsonObject] | None = None
        self.usage: object = None
        self.n_token_chunks = 0
        self.raw_events: list[bytes] = []
        self.raw_size = -1
        """The size of the events kept, counted once the bytes fed pass MAX_RAW_BYTES."""
        self.fed = 0
        """Bytes fed: no event is longer."""

    def feed(self, data: bytes, now_ns: int) -> None:  # noqa: C901 -- the per-chunk loop: a split costs a call per chunk on the hot path (#35)
        """One socket read, stamped `now_ns`: each event it completes takes that stamp.

        The hot path: one loop over the read's events, every field it uses checked inline (a
        field of the expected type costs one `type(...) is` test; one of another type goes to the
        `_shapes` helper, which raises with the field's name, or reads null as empty). Whatever is
        not the plain case (not a JSON object, an `error`, over the JSON container cap, anything
        in the delta besides its text) takes the helpers' path whole. The caps are checked per
        read: no event is longer than the bytes fed so far."""
        ms = (now_ns - self.t0) / 1e6
        timings, result = self.timings, self.result
        if timings.first_byte_ms is None:
            timings.first_byte_ms = ms
        try:
            events = self.parser.feed(data)
        except SSELimitError as e:
            raise CallError(ErrorClass.too_large, str(e)) from None
        self.fed += len(data)
        self._keep_raw(events)
        short = self.fed <= MAX_JSON_CONTAINERS  # then no event can hold more containers
        loads, is_chat = orjson.loads, self.is_chat
        look_upstream = self.upstream_field if result.upstream is None else None
        need_model = result.response_model is None
        write, stamp = self.text.write, self.chunk_ms.append
        tokens = 0
        for ev in events:
            if ev == b"[DONE]":
                self.done = True
                continue
            try:  # a longer event goes to the helpers, which count its brackets first
                obj = loads(ev) if short or len(ev) <= MAX_JSON_CONTAINERS else None
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is not dict or "error" in obj:  # the checks, with their messages
                obj = _json_object(
                    ev, "stream event", f"malformed JSON in stream event: {ev[:80]!r}"
                )
            if "usage" in obj or "x_groq" in obj:
                usage = usage_of(obj)
                if usage:
                    self.usage = usage
            if look_upstream and obj.get(look_upstream):
                result.upstream = _label(obj[look_upstream])
                look_upstream = None
            if need_model and obj.get("model"):
                result.response_model = _label(obj["model"])
                need_model = False
            choices = obj.get("choices")
            if type(choices) is not list:
                choices = _list(choices, "choices")
            if not choices:
                continue
            ch = choices[0]
            if type(ch) is not dict:
                ch = _dict(ch, "choices[0]")
            if is_chat:
                delta = ch.get("delta")
                if type(delta) is not dict:
                    delta = _dict(delta, "delta")
                c = delta.get("content")
                if type(c) is str and len(delta) == 1 and ch.get("logprobs") is None:
                    token = c != ""
                    if token:
                        write(c)
                else:
                    token = self._chat_delta(ch, delta, ms)
            else:
                token = self._completion_choice(ch)
            if ch.get("finish_reason"):
                result.finish_reason = _label(ch["finish_reason"])
            if token:
                tokens += 1
                stamp(ms)
        if tokens:
            self.n_token_chunks += tokens
            if not self.first_token_seen:
                self.first_token_seen = True
                timings.first_token_ms = ms
                self.phase = "stall"

    def _keep_raw(self, events: list[bytes]) -> None:
        """Keep events for `raw` while what is kept is under MAX_RAW_BYTES (the first event to
        pass it is kept whole, the later ones not)."""
        if self.fed <= MAX_RAW_BYTES:  # every event so far is under the cap: all are kept
            self.raw_events += events
            return
        if self.raw_size < 0:  # every event so far was kept: count them once
            self.raw_size = sum(map(len, self.raw_events)) + len(self.raw_events)
        for ev in events:
            if self.raw_size >= MAX_RAW_BYTES:
                return
            self.raw_events.append(ev)
            self.raw_size += len(ev) + 1

    def _chat_delta(self, ch: JsonObject, delta: JsonObject, ms: float) -> bool:
        """A chat choice's delta beyond plain text; True when it carries a token (text,
        reasoning or a tool call)."""
        c = _text(delta.get("content"), "delta.content")  # a content of another type is an error
        token = c != ""
        if token:
            self.text.write(c)
        r = _text(delta.get("reasoning_content") or delta.get("reasoning"), "delta.reasoning")
        if r:
            self.reasoning.write(r)
            token = True
        tcs = _list(delta.get("tool_calls"), "delta.tool_calls")
        if tcs:
            token = True
            for tc in tcs:
                _merge_tool_delta(self.tools, _dict(tc, "tool call delta"))
        if not token and delta.get("role") and self.timings.role_ms is None:
            self.timings.role_ms = ms
        lp = _dict(ch.get("logprobs"), "logprobs")
        if lp.get("content"):
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(_logprobs(lp["content"], len(self.logprobs)))
        return token

    def _completion_choice(self, ch: JsonObject) -> bool:
        """A completions choice; True when it carries text."""
        c = _text(ch.get("text"), "text")
        if c:
            self.text.write(c)
        lp = _dict(ch.get("logprobs"), "logprobs")
        if lp:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.append(_completion_logprobs(lp))
            if len(self.logprobs) > MAX_LOGPROB_ENTRIES:
                raise CallError(
                    ErrorClass.too_large, f"more than {MAX_LOGPROB_ENTRIES:,} logprob entries"
                )
        return bool(c)

    def finish(self, end_ns: int) -> CallResult:
        """The result of a stream that ended at `end_ns`, or why it is not one."""
        timings, result = self.timings, self.result
        timings.end_ms = (end_ns - self.t0) / 1e6
        if self.chunk_ms:
            timings.last_token_ms = self.chunk_ms[-1]
            timings.token_chunk_ms = self.chunk_ms.tolist()
        result.raw = b"\n".join(self.raw_events).decode("utf-8", "replace")
        if not self.done:
            what = "mid-event" if self.parser.pending else "before [DONE]"
            raise CallError(ErrorClass.bad_response, f"stream ended {what}")
        if not self.first_token_seen and result.finish_reason is None:
            raise CallError(ErrorClass.bad_response, "stream had no choices")
        result.text = self.text.getvalue()
        result.reasoning = self.reasoning.getvalue() or None
        result.tool_calls = [self.tools[k].call() for k in sorted(self.tools)]
        result.logprobs = self.logprobs
        _apply_usage(result, self.usage, self.n_token_chunks)
        return result
