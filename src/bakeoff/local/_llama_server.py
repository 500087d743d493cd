"""`python -m bakeoff.local._llama_server ARGS`: llama-cpp-python's own server
(`python -m llama_cpp.server ARGS`, the same arguments), with the model loaded without repacked
weights (`_llama.no_repacked_weights`: quantized GGUFs crashed the server on CPUs with AMX), and its
top log-probabilities found without sorting the vocabulary (`_top_first`)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from bakeoff.local._llama import no_repacked_weights

TOP_LOGPROBS = 256
"""The most `top_logprobs` per token the server then gives (OpenAI's API allows 20)."""


def _top_first(
    items: Iterable[Any], *, key: Callable[[Any], Any] | None = None, reverse: bool = False
) -> list[Any]:
    """`sorted` as llama-cpp-python's `llama` module calls it — only for logprobs: `sorted(zip(
    logprobs, range(n_vocab)), reverse=True)`, of which it reads the first `top_logprobs` — as the
    largest `TOP_LOGPROBS`, in the same order. The whole vocabulary (49,152 tokens) sorted in Python
    for every generated token made a greedy call asking `top_logprobs` several times slower."""
    if reverse and key is None:
        return heapq.nlargest(TOP_LOGPROBS, items)
    return sorted(items, key=key, reverse=reverse)


def main() -> None:
    import llama_cpp.llama as llama_module
    from llama_cpp.server.__main__ import main as serve

    llama_module.sorted = _top_first  # type: ignore[attr-defined]
    # the server loads its model at start-up, before it serves: the wrapper stays on for its life
    with no_repacked_weights():
        serve()


if __name__ == "__main__":
    main()
