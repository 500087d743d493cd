"""What a suite is: a seeded generator of items and a scorer for each answer."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bakeoff.endpoints import CallRequest, CallResult, JsonObject


class Item(BaseModel):
    """One task. `id` is stable for a given suite, seed and index."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    id: str
    tier: str | None = None
    messages: list[dict[str, Any]] | None = None
    """Chat input; `prompt` is used for text-completion endpoints instead."""
    prompt: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Per-item body parameters (e.g. max_tokens) over the endpoint's defaults."""
    target: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def request(
        self,
        api: str,
        stream: bool,
        defaults: Mapping[str, object],
        regime: Mapping[str, object] | None = None,
    ) -> CallRequest:
        """The request of this item: its input, its `params` over the endpoint's `defaults`, and a
        regime's extras over both (in `endpoints.request_body`'s order)."""
        prompt: str | None = None
        messages: list[JsonObject] | None = None
        if api == "chat":
            messages = self.messages or [{"role": "user", "content": self.prompt or ""}]
        else:
            prompt = self.prompt
            if prompt is None:
                prompt = "\n".join(str(m.get("content", "")) for m in self.messages or [])
        return CallRequest(
            api="chat" if api == "chat" else "completions",
            messages=messages,
            prompt=prompt,
            defaults=dict(defaults),
            params=dict(self.params),
            regime=dict(regime or {}),
            stream=stream,
        )

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.tier,
            "input": {"messages": self.messages, "prompt": self.prompt, "params": self.params},
            "target": self.target,
            "meta": self.meta,
        }

    @classmethod
    def from_stored(cls, row: Any) -> Item:
        import orjson

        inp = orjson.loads(row["input_json"])
        return cls(
            id=row["item_id"],
            tier=row["tier"],
            messages=inp.get("messages"),
            prompt=inp.get("prompt"),
            params=inp.get("params") or {},
            target=orjson.loads(row["target_json"]) if row["target_json"] else None,
            meta=orjson.loads(row["meta_json"]) if row["meta_json"] else {},
        )


class Score(BaseModel):
    """A scorer's judgement of one answer."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    scorer: str
    value: float
    """In [0, 1] for pass/fail scorers."""
    passed: bool | None = None
    detail: str | None = None
    """What was extracted and compared, for the trace view."""


class Reply(BaseModel):
    """An ideal (or deliberately wrong) reply to an item: what a scripted fake endpoint sends back.

    Built-in suites give `reference_reply(item)` (a reply that must score 1) and `wrong_reply(item)`
    (one that must score 0), which tests use to prove each scorer accepts and rejects."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    """`{"name": ..., "arguments": {...}}` each."""


@runtime_checkable
class Scorer(Protocol):
    name: str

    def __call__(self, item: Item, result: CallResult) -> Score: ...


Judge = Callable[[str], Awaitable[str]]
"""Asks the run's judge endpoint one question; its reply's text."""


@runtime_checkable
class Suite(Protocol):
    """A suite as the runner drives it.

    A plugin's suite need only give `name`, `description`, `default_size`, `tiers`, `items` and
    `score`: `as_suite` completes it with the defaults of the rest (not linear, no model code, no
    judge; `ascore` scores with `score`)."""

    name: str
    description: str
    default_size: int
    tiers: tuple[str, ...]
    linear_scoring: bool
    """Its scorers are linear in the reply: a short reply is scored on the event loop."""
    runs_model_code: bool
    """It runs the model's code (in the sandbox, through `ascore`, off the event loop)."""
    judge_endpoint: str | None
    """The lineup endpoint that grades its replies (an LLM judge, through `ascore`), if any."""

    def items(self, *, seed: int, n: int | None = None, **options: object) -> list[Item]:
        """Deterministic per seed: the same seed and n give the same items and ids."""
        ...

    def score(self, item: Item, result: CallResult) -> list[Score]: ...

    async def ascore(
        self, item: Item, result: CallResult, judge: Judge | None = None
    ) -> list[Score]:
        """Scores off the event loop (the sandbox) or with the run's judge."""
        ...


class _Completed:
    """A suite that left out members of `Suite`: their defaults, the rest its own."""

    def __init__(self, suite: Any) -> None:
        self.suite = suite
        self.name: str = suite.name
        self.description: str = suite.description
        self.default_size: int = suite.default_size
        self.tiers: tuple[str, ...] = tuple(suite.tiers)
        self.linear_scoring = bool(getattr(suite, "linear_scoring", False))
        self._ascore = getattr(suite, "ascore", None)
        self.runs_model_code = self._ascore is not None and bool(
            getattr(suite, "runs_model_code", False)
        )
        spec = getattr(suite, "spec", None)  # a dataset's: its `judge`
        judge = getattr(suite, "judge_endpoint", None) or getattr(spec, "judge", None)
        self.judge_endpoint: str | None = judge if self._ascore is not None else None

    def items(self, *, seed: int, n: int | None = None, **options: object) -> list[Item]:
        return list(self.suite.items(seed=seed, n=n, **options))

    def score(self, item: Item, result: CallResult) -> list[Score]:
        return list(self.suite.score(item, result))

    async def ascore(
        self, item: Item, result: CallResult, judge: Judge | None = None
    ) -> list[Score]:
        if self._ascore is None:
            return self.score(item, result)
        if judge is None:
            return list(await self._ascore(item, result))
        return list(await self._ascore(item, result, judge=judge))

    def __getattr__(self, name: str) -> Any:  # what else the suite gives (reference_reply, ...)
        return getattr(self.suite, name)


def as_suite(suite: object) -> Suite:
    """`suite` as a whole `Suite`: itself when it gives every member, else completed."""
    return suite if isinstance(suite, Suite) else _Completed(suite)


def unique_items(n: int, make: Callable[[int, int], Item]) -> list[Item]:
    """`n` items from `make(index, attempt)`, redrawing (attempt 1, 2, ...) an item whose prompt an
    earlier item already has, so a suite never asks the same question twice."""
    seen: set[str] = set()
    out = []
    for i in range(n):
        for attempt in range(100):
            it = make(i, attempt)
            key = orjson.dumps([it.messages, it.prompt]).decode()
            if key not in seen:
                break
        seen.add(key)
        out.append(it)
    return out


def rng(*parts: object) -> random.Random:
    """A generator seeded by the parts (attempt 0 leaves the parts as they are)."""
    parts_ = list(parts)
    if parts_ and parts_[-1] == 0:
        parts_ = parts_[:-1]
    return random.Random(":".join(map(str, parts_)))
