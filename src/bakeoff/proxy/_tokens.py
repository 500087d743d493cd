"""Tokenizers for prompt truncation: the model's own vocabulary when the proxy fronts a local GGUF,
else whitespace-delimited words (an estimate, said so in the docs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

_WORD = re.compile(r"\s*\S+|\s+")


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[Any]: ...
    def decode(self, tokens: list[Any]) -> str: ...


class WordTokenizer:
    """Whitespace-delimited words, keeping their leading spaces so decode(encode(x)) == x."""

    def encode(self, text: str) -> list[Any]:
        return _WORD.findall(text)

    def decode(self, tokens: list[Any]) -> str:
        return "".join(tokens)


class GGUFTokenizer:
    """The vocabulary of a GGUF model, through llama.cpp (vocab only: no weights are loaded)."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def encode(self, text: str) -> list[Any]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def decode(self, tokens: list[Any]) -> str:
        return self._llm.detokenize(tokens).decode("utf-8", "replace")
