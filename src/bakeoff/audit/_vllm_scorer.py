"""The reference scorer on vLLM, by token ids: the prompt as vLLM's chat endpoint tokenizes it
(`/tokenize` with the messages), the completion tokenized alone and appended (as the in-process
scorer does), both sent as token ids to `/v1/completions` with `echo: true`, `max_tokens: 0` and
`prompt_logprobs: k`; each completion token's log-probability is read from
`choices[i].prompt_logprobs[position]["<its id>"]`.

Why not the generic echo path (`HttpReferenceScorer`): vLLM's echo decodes every token alone
(a character split over tokens shows as U+FFFD, so the texts do not spell the completion), and a
prompt sent as text gets a second BOS (`add_special_tokens` defaults to true on completions,
false on chat, and the chat template already holds one). By ids, the alignment is exact by
construction, the ranks are vLLM's own vocabulary ranks, and every answer is checked against
the shape vLLM documents (the first entry null, one entry per token, each holding the token
sent) — an answer in another shape is a `ReferenceScorerError`, never a silently shifted number.

Batching: `score_many` sends up to `batch` prompts per request (vLLM batches them in one
scheduler step); the audit calls it once per look at the evidence with every output it will score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bakeoff.audit._scorer import (
    HttpReferenceScorer,
    ReferenceScorerError,
    TokenScores,
    render_chat_template,
)
from bakeoff.audit._scorer_wire import count, listed, logprob, mapping, refuse, string
from bakeoff.lineups import purposes

_Scored = tuple[list[int], np.ndarray, np.ndarray, np.ndarray, list[str]]
MAX_ID = 2**31 - 1
"""The largest token id (or rank) taken from an answer."""


class VllmReferenceScorer(HttpReferenceScorer):
    """Teacher forcing on a vLLM server by token ids (see the module docstring)."""

    def __init__(self, base_url: str, model: str, *, batch: int = 16, **kw: Any) -> None:
        super().__init__(base_url, model, **kw)
        self.batch = max(1, batch)
        self.max_tokens = 0
        """0: score without generating; 1 after a vLLM that refuses 0 (before echo-only)."""
        self._prompts: dict[str, list[int]] = {}
        self._scored: dict[tuple[tuple[int, ...], str], _Scored] = {}

    # -- tokens --------------------------------------------------------------------------------------
    def _ids(self, body: dict[str, Any]) -> list[int]:
        """`/tokenize`'s ids: a list of token ids no longer than the text sent allows (a token
        is at least a byte; a chat template adds its own text)."""
        import orjson

        bound = len(orjson.dumps(body)) + 4096
        out = self._post(self.root + "/tokenize", {"model": self.model, **body}, bound)
        ids = out.get("tokens") if isinstance(out, dict) else None
        if not isinstance(ids, list):
            raise ReferenceScorerError(
                f"{self.root}/tokenize answered no `tokens` list of ids: not vLLM's tokenizer route"
            )
        listed(ids, "/tokenize tokens", bound)
        return [count(t, f"/tokenize tokens[{i}]", MAX_ID) for i, t in enumerate(ids)]

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text` (`special`: with the BOS the model's tokenizer adds)."""
        return self._ids({"prompt": text, "add_special_tokens": special})

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt's token ids as vLLM's chat endpoint builds them: its chat template (or
        `chat_template`), no BOS beyond the template's."""
        import orjson

        key = orjson.dumps(messages, option=orjson.OPT_SORT_KEYS).decode()
        with self._lock:
            if key not in self._prompts:
                if self._template is not None:
                    text = render_chat_template(self._template, messages, self._bos, self._eos)
                    self._prompts[key] = self.tokenize(text)
                else:
                    body = {"messages": messages, "add_generation_prompt": True}
                    self._prompts[key] = self._ids(body)
            return list(self._prompts[key])

    # -- scoring -------------------------------------------------------------------------------------
    def score(
        self, prompt_tokens: list[int], completion: str, rng: np.random.Generator | None = None
    ) -> TokenScores:
        rng = rng or np.random.default_rng(0)
        key = (tuple(prompt_tokens), completion)
        with self._lock:
            if key not in self._scored:
                self._fill([key])
            ids, lps, ranks, above, pieces = self._scored[key]
        pit = np.minimum(above + rng.random(len(lps)) * np.exp(lps), 1.0)
        return TokenScores(list(ids), lps, ranks, pit, list(pieces), above)

    def score_many(self, pairs: list[tuple[list[int], str]]) -> None:
        """Score these (prompt tokens, completion) pairs, `batch` prompts per request; `score()`
        then answers them from memory."""
        with self._lock:
            todo = list(dict.fromkeys((tuple(p), c) for p, c in pairs))
            todo = [k for k in todo if k not in self._scored]
            for i in range(0, len(todo), self.batch):
                self._fill(todo[i : i + self.batch])

    def _fill(self, keys: list[tuple[tuple[int, ...], str]]) -> None:
        """Score `keys` in one request (the caller holds the lock). Their completions are
        tokenized in parallel (vLLM's /tokenize takes one text): one round trip, not one each."""
        texts = list(dict.fromkeys(key[1] for key in keys if key[1]))
        if len(texts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(len(texts), 16)) as pool:
                ids = dict(zip(texts, pool.map(self.tokenize, texts), strict=True))
        else:
            ids = {t: self.tokenize(t) for t in texts}
        comps = {key: ids[key[1]] if key[1] else [] for key in keys}
        sent = [key for key in keys if comps[key]]
        for key in keys:
            if not comps[key]:
                z = np.zeros(0)
                self._scored[key] = ([], z, z.astype(int), z, [])
            elif not key[0]:
                raise ReferenceScorerError("no prompt token: nothing conditions the first token")
        if not sent:
            return
        seqs = [[*key[0], *comps[key]] for key in sent]
        for key, seq, plp in zip(sent, seqs, self._prompt_logprobs(seqs), strict=True):
            self._scored[key] = _read(plp, seq, len(key[0]), self.k)

    def _prompt_logprobs(self, seqs: list[list[int]]) -> list[list[Any]]:
        """`prompt_logprobs` of each token sequence, checked against vLLM's documented shape."""
        body = {
            "model": self.model,
            "prompt": seqs if len(seqs) > 1 else seqs[0],
            "echo": True,
            "max_tokens": self.max_tokens,
            "prompt_logprobs": self.k,
            **purposes.GREEDY,
        }
        url = self.base_url + "/completions"
        try:
            out = self._post(url, body, sum(map(len, seqs)))
        except ReferenceScorerError as e:
            if e.status != 400 or "max_tokens" not in str(e) or self.max_tokens != 0:
                raise
            self.max_tokens = 1  # a vLLM before echo without generation: one token, ignored
            out = self._post(url, {**body, "max_tokens": 1}, sum(map(len, seqs)) + len(seqs))
        choices = out.get("choices") if isinstance(out, dict) else None
        if not isinstance(choices, list) or len(choices) != len(seqs):
            got = len(choices) if isinstance(choices, list) else "no"
            raise ReferenceScorerError(f"{url}: {len(seqs)} prompts sent, {got} choices answered")
        found: list[Any] = [None] * len(seqs)
        for i, c in enumerate(choices):
            if not isinstance(c, dict):
                raise refuse(f"choices[{i}]", c, "an object")
            at = count(c.get("index", i), f"choices[{i}].index", len(seqs) - 1)
            if found[at] is not None:
                raise ReferenceScorerError(f"{url}: two choices answer prompt {at} (choices[{i}])")
            found[at] = c.get("prompt_logprobs")
        if not all(isinstance(p, list) for p in found):
            raise ReferenceScorerError(
                f"{url} answered no `prompt_logprobs`: not a vLLM server (or a proxy in front of "
                "one that drops vLLM's own fields); set the endpoint's engine, or audit.scorer"
            )
        return [p for p in found if isinstance(p, list)]


def _read(plp: list[Any], seq: list[int], n_prompt: int, k: int) -> _Scored:
    """The completion tokens' (ids, log-probabilities, ranks, mass above, texts) from one
    prompt's `prompt_logprobs`, which must hold one entry per token sent, null only first."""
    if len(plp) != len(seq):
        raise ReferenceScorerError(
            f"prompt_logprobs holds {len(plp)} entries for the {len(seq)} tokens sent: the server "
            "cut or re-tokenized the prompt"
        )
    if plp[0] is not None:
        raise ReferenceScorerError(
            "prompt_logprobs[0] is not null: these entries do not follow vLLM's convention "
            "(entry i scores token i given the tokens before it; nothing conditions the first)"
        )
    holes = [i for i in range(1, len(plp)) if not isinstance(plp[i], dict)]
    if holes:
        raise ReferenceScorerError(
            f"prompt_logprobs[{holes[0]}] is {plp[holes[0]]!r:.40}: only the first entry may be null"
        )
    comp = seq[n_prompt:]
    lps, ranks, above, pieces = [], [], [], []
    for pos, tid in enumerate(comp, start=n_prompt):
        entry = mapping(plp[pos], f"prompt_logprobs[{pos}]", k + 1)
        if not isinstance(entry.get(str(tid)), dict):
            raise ReferenceScorerError(
                f"prompt_logprobs[{pos}] has no entry for token {tid}, the one sent there: the "
                "server's tokenizer is not the one its /tokenize used"
            )
        checked = {t: _checked_entry(v, f"prompt_logprobs[{pos}][{t!r}]") for t, v in entry.items()}
        lp, rank, piece = checked[str(tid)]
        higher = [v[0] for t, v in checked.items() if t != str(tid) and v[0] > lp + 1e-9]
        lps.append(lp)
        ranks.append(rank - 1 if rank is not None else len(higher))
        above.append(float(np.sum(np.exp(higher))) if higher else 0.0)
        pieces.append(piece)
    return comp, np.array(lps, dtype=float), np.array(ranks, dtype=int), np.array(above), pieces


def _checked_entry(v: Any, field: str) -> tuple[float, int | None, str]:
    """(log-probability, vLLM's rank or None, decoded text) of one token's entry, checked."""
    if not isinstance(v, dict):
        raise refuse(field, v, "an object")
    lp = logprob(v.get("logprob"), f"{field}.logprob")
    rank = v.get("rank")
    rank = None if rank is None else count(rank, f"{field}.rank", MAX_ID, low=1)
    piece = v.get("decoded_token")
    return lp, rank, "" if piece is None else string(piece, f"{field}.decoded_token")


def is_vllm(base_url: str, model: str, api_key: str | None = None, timeout: float = 10.0) -> bool:
    """The server answers vLLM's `/tokenize` (its `max_model_len` field says so). An error status
    says no; an answer that cannot be read (unreachable, endless, too slow, not JSON) is raised:
    the scorer could not use this server either way."""
    probe = HttpReferenceScorer(base_url, model, api_key=api_key, timeout=timeout)
    try:
        out = probe._post(probe.root + "/tokenize", {"model": model, "prompt": "a"}, 4096)
    except ReferenceScorerError as e:
        if e.status is None:
            raise
        return False
    return isinstance(out, dict) and "max_model_len" in out and isinstance(out.get("tokens"), list)


def http_reference_scorer(
    base_url: str, model: str, *, engine: str | None = None, batch: int = 16, **kw: Any
) -> HttpReferenceScorer:
    """The HTTP reference scorer for an endpoint: by token ids on vLLM (`engine: vllm`, or no
    engine and a server answering vLLM's `/tokenize`), else the generic echo scorer."""
    api_key = kw.get("api_key")
    if engine == "vllm" or (engine is None and is_vllm(base_url, model, api_key)):
        return VllmReferenceScorer(base_url, model, batch=batch, **kw)
    return HttpReferenceScorer(base_url, model, **kw)
