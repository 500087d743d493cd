"""The compute side of the transformers server: one model, one worker thread, batches of requests.

Requests waiting when the worker turns to new work (those that came while it was busy, or within the
batch window of the first) run together as one left-padded batch: attention mask over the padding,
position ids counted from each row's first real token, one KV cache (`DynamicCache`). Every row
samples with its own parameters and its own seeded `torch.Generator`, and stops at its own
max_tokens, end-of-generation token or stop string; finished rows leave the batch and the cache.
As on any real provider, the batch a request lands in changes its floating-point numerics.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

Event = tuple[Any, ...]
"""What a request's `emit` receives from the worker thread: `("text", str)`, `("done",
finish_reason, completion_tokens)`, or `("error", message)`."""


@dataclass
class GenRequest:
    """One chat completion to run: the prompt's token ids and how to sample."""

    prompt: list[int]
    max_tokens: int
    emit: Callable[[Event], None]
    """Called from the worker thread (it must be thread-safe)."""
    temperature: float = 0.0
    """0: greedy (argmax)."""
    top_p: float = 1.0
    top_k: int = 0
    """0: off."""
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    """HF semantics: logits of tokens already in the sequence (prompt included) divided by it when
    positive, multiplied when negative; 1: off."""
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)


def choose(
    logits: torch.Tensor,
    req: GenRequest,
    seen: torch.Tensor,
    gen: torch.Generator,
) -> int:
    """The next token of one row from its last logits (float32, [vocab])."""
    if req.repetition_penalty != 1.0:
        pen = req.repetition_penalty
        logits = torch.where(seen, torch.where(logits < 0, logits * pen, logits / pen), logits)
    if req.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / req.temperature
    if 0 < req.top_k < logits.numel():
        kth = torch.topk(logits, req.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if req.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the tokens ranked above
        drop = before >= req.top_p
        drop[0] = False  # the most likely token is always kept
        probs = probs.scatter(0, order, sorted_p.masked_fill(drop, 0.0))
    if req.min_p > 0:
        probs = probs.masked_fill(probs < req.min_p * probs.max(), 0.0)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def _held_back(text: str, stops: list[str]) -> int:
    """Characters at the end of `text` that may still become a stop string (or an unfinished
    UTF-8 sequence, decoded as U+FFFD): not sent yet."""
    n = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), n, -1):
            if text.endswith(s[:k]):
                n = k
                break
    while n < len(text) and text[len(text) - 1 - n] == "\ufffd":
        n += 1
    return n


class _Row:
    """A request inside a running batch: its tokens so far and the text already sent."""

    def __init__(self, req: GenRequest, vocab: int, decode: Callable[[list[int]], str]) -> None:
        self.req = req
        self.ids: list[int] = []
        self.sent = 0
        self.decode = decode
        self.gen = torch.Generator().manual_seed(req.seed)
        self.seen = torch.zeros(vocab, dtype=torch.bool)
        if req.repetition_penalty != 1.0:
            self.seen[torch.tensor(req.prompt, dtype=torch.long)] = True

    def push(self, tok: int, eos: set[int]) -> bool:
        """Take the next token; emit new text; True once the request is finished."""
        if tok in eos:
            return self._finish("stop", self.decode(self.ids))
        self.ids.append(tok)
        self.seen[tok] = True
        text = self.decode(self.ids)
        cuts = [i for i in (text.find(s) for s in self.req.stop if s) if i >= 0]
        if cuts:
            return self._finish("stop", text[: min(cuts)])
        if len(self.ids) >= self.req.max_tokens:
            return self._finish("length", text)
        end = len(text) - _held_back(text, self.req.stop)
        if end > self.sent:
            self.req.emit(("text", text[self.sent : end]))
            self.sent = end
        return False

    def _finish(self, reason: str, text: str) -> bool:
        if len(text) > self.sent:
            self.req.emit(("text", text[self.sent :]))
        self.req.emit(("done", reason, len(self.ids)))
        return True


class Engine:
    """The model and the worker thread that runs every forward pass."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 8,
        batch_window_ms: float = 10.0,
        forced_repetition_penalty: float | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.window_s = batch_window_ms / 1000
        self.forced_penalty = forced_repetition_penalty
        self.vocab = int(model.get_output_embeddings().weight.shape[0])
        self.eos = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else min(self.eos))
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._batch_sizes: Counter[int] = Counter()
        self._forward_passes = 0
        self._stats_lock = threading.Lock()
        self._tok_lock = threading.Lock()  # a fast tokenizer is not to be shared between threads
        self._q: queue.Queue[GenRequest | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="torch-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, req: GenRequest) -> None:
        if self.forced_penalty is not None:
            req.repetition_penalty = self.forced_penalty
        self._q.put(req)

    def close(self) -> None:
        self._q.put(None)

    def stats(self) -> tuple[dict[int, int], int]:
        """Batches run, by their number of requests; forward passes made."""
        with self._stats_lock:
            return dict(self._batch_sizes), self._forward_passes

    def tokenize(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt: the messages through the model's own chat template."""
        with self._tok_lock:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=False
            )
        return [int(i) for i in ids]

    def decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            text = self.tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        return str(text)

    def _take_batch(self, first: GenRequest) -> list[GenRequest] | None:
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if nxt is None:
                return None
            batch.append(nxt)
        return [r for r in batch if not r.cancelled.is_set()]

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = self._take_batch(first)
            if batch is None:
                return
            if not batch:
                continue
            with self._stats_lock:
                self._batch_sizes[len(batch)] += 1
            try:
                with torch.inference_mode():
                    self._run(batch)
            except Exception as e:  # a failed batch fails its requests, not the server
                for r in batch:
                    r.emit(("error", f"{type(e).__name__}: {e}"))

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        with self._stats_lock:
            self._forward_passes += 1
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        return out.logits[:, -1, :].float()

    def _run(self, batch: list[GenRequest]) -> None:
        from transformers import DynamicCache

        rows = [_Row(r, self.vocab, self.decode) for r in batch]
        width = max(len(r.prompt) for r in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every row's last token in the last column
            ids[i, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
            mask[i, width - len(r.prompt) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(ids, mask, pos, cache)
        nxt_pos = pos[:, -1] + 1
        while True:
            toks = [choose(logits[i], row.req, row.seen, row.gen) for i, row in enumerate(rows)]
            keep = [
                i
                for i, row in enumerate(rows)
                if not row.req.cancelled.is_set() and not row.push(toks[i], self.eos)
            ]
            if not keep:
                return
            if len(keep) < len(rows):  # finished rows leave the batch and its cache
                sel = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(sel)
                mask, nxt_pos = mask[sel], nxt_pos[sel]
                rows = [rows[i] for i in keep]
                toks = [toks[i] for i in keep]
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
            step = torch.tensor(toks, dtype=torch.long).view(-1, 1)
            logits = self._forward(step, mask, nxt_pos.view(-1, 1), cache)
            nxt_pos = nxt_pos + 1


_END_OF_TURN = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
)
"""Special tokens llama.cpp also ends generation at (its end-of-generation heuristics)."""


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-generation token ids: the model's config, generation config and tokenizer's, and
    the special tokens of `_END_OF_TURN` (as llama.cpp does)."""
    found = {
        int(i)
        for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if getattr(tok, "special", False) and str(tok) in _END_OF_TURN
    }
    gen_cfg = getattr(model, "generation_config", None)
    for v in (
        getattr(model.config, "eos_token_id", None),
        getattr(gen_cfg, "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        if isinstance(v, int):
            found.add(v)
        elif isinstance(v, list | tuple):
            found.update(int(x) for x in v)
    return found
