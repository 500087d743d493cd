"""The reference scorer: per-token log-probabilities and ranks of any completion under the reference
model, by teacher forcing in-process with llama.cpp on the reference GGUF.

Alignment: with `logits_all=True`, row i of the logits is the distribution of token i+1 given tokens
0..i, so completion token j (at sequence position p) is scored by row p-1. (llama-cpp-python's server
`echo` + `logprobs` is shifted by one position; this scorer is tested on a known sentence instead.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TokenScores:
    tokens: list[int]
    logprobs: np.ndarray
    """log p_ref(token | prefix), one per completion token."""
    ranks: np.ndarray
    """0 = the reference's most likely token."""
    pit: np.ndarray
    """Randomised probability integral transform: P(ranked above) + U * p(token), tokens ordered by
    reference probability; Uniform(0, 1) for tokens sampled from the reference itself."""

    @property
    def mean_logprob(self) -> float:
        return float(self.logprobs.mean()) if self.logprobs.size else 0.0


class LocalReferenceScorer:
    """Teacher forcing on a GGUF with llama.cpp (thread-safe: one evaluation at a time)."""

    def __init__(self, model_path: Path, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = Path(model_path)
        self.llm = Llama(
            model_path=str(model_path),
            logits_all=True,
            n_ctx=n_ctx,
            n_threads=n_threads,
            verbose=False,
        )
        md = self.llm.metadata
        eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "replace")
        bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "replace")
        self._fmt = Jinja2ChatFormatter(
            template=md["tokenizer.chat_template"], eos_token=eos, bos_token=bos
        )
        self._lock = threading.Lock()
        self._memo: dict[tuple[tuple[int, ...], str], Any] = {}

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=special))

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text the reference server builds from these messages (its chat template)."""
        return str(self._fmt(messages=messages).prompt)  # type: ignore[arg-type]

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        return self.tokenize(self.chat_prompt(messages), special=True)

    def score(
        self, prompt_tokens: list[int], completion: str, rng: np.random.Generator | None = None
    ) -> TokenScores:
        rng = rng or np.random.default_rng(0)
        key = (tuple(prompt_tokens), completion)
        if key not in self._memo:
            self._memo[key] = self._per_token(prompt_tokens, completion)
        comp, logprobs, ranks, above = self._memo[key]
        pit = above + rng.random(len(comp)) * np.exp(logprobs)
        return TokenScores(comp, logprobs, ranks, pit)

    def _per_token(
        self, prompt_tokens: list[int], completion: str
    ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        comp, logits = self._logits(prompt_tokens, completion)
        if not comp:
            empty = np.zeros(0)
            return [], empty, empty.astype(int), empty
        m = logits.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        idx = np.arange(len(comp))
        tok_logit = logits[idx, comp]
        logprobs = tok_logit - logz
        higher = logits > tok_logit[:, None]
        ranks = higher.sum(axis=1)
        above = np.where(higher, np.exp(logits - logz[:, None]), 0.0).sum(axis=1)
        return comp, logprobs, ranks, above

    def _logits(self, prompt_tokens: list[int], completion: str) -> tuple[list[int], np.ndarray]:
        """Completion tokens and the logits row that predicts each (teacher forcing)."""
        comp = self.tokenize(completion)
        if not comp:
            return [], np.zeros((0, 0))
        seq = prompt_tokens + comp
        n_ctx = self.llm.n_ctx()
        if len(seq) > n_ctx:
            seq = seq[-n_ctx:]
            comp = comp[-(n_ctx - 1) :] if len(comp) >= n_ctx else comp
        with self._lock:
            self.llm.reset()
            self.llm.eval(seq)
            start = len(seq) - len(comp)
            logits = np.array(self.llm.scores[start - 1 : len(seq) - 1], dtype=np.float64)
        return comp, logits
