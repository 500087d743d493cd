"""What a suite is: a seeded generator of items and a scorer for each answer."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from bakeoff.endpoints import CallRequest, CallResult


class Item(BaseModel):
    """One task. `id` is stable for a given suite, seed and index."""

    id: str
    tier: str | None = None
    messages: list[dict[str, Any]] | None = None
    """Chat input; `prompt` is used for text-completion endpoints instead."""
    prompt: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Per-item body parameters (e.g. max_tokens) over the endpoint's defaults."""
    target: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def request(self, api: str, stream: bool, defaults: dict[str, Any]) -> CallRequest:
        params = {**defaults, **self.params}
        if api == "chat":
            messages = self.messages or [{"role": "user", "content": self.prompt or ""}]
            return CallRequest(api="chat", messages=messages, params=params, stream=stream)
        prompt = self.prompt
        if prompt is None:
            prompt = "\n".join(str(m.get("content", "")) for m in self.messages or [])
        return CallRequest(api="completions", prompt=prompt, params=params, stream=stream)

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

    scorer: str
    value: float
    """In [0, 1] for pass/fail scorers."""
    passed: bool | None = None
    detail: str | None = None
    """What was extracted and compared, for the trace view."""


@runtime_checkable
class Scorer(Protocol):
    name: str

    def __call__(self, item: Item, result: CallResult) -> Score: ...


@runtime_checkable
class Suite(Protocol):
    """A suite plugin."""

    name: str
    description: str
    default_size: int
    tiers: tuple[str, ...]

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        """Deterministic per seed: the same seed and n give the same items and ids."""
        ...

    def score(self, item: Item, result: CallResult) -> list[Score]: ...
