"""The reference scorer: per-token log-probabilities and ranks of any completion under the reference
model, by teacher forcing — in-process with llama.cpp on the reference GGUF (`LocalReferenceScorer`),
or over HTTP from the reference's own server (`HttpReferenceScorer`: `/v1/completions` with `echo`
and `logprobs`; on vLLM, `_vllm_scorer.VllmReferenceScorer`, by token ids).

Alignment: with `logits_all=True`, row i of the logits is the distribution of token i+1 given tokens
0..i, so completion token j (at sequence position p) is scored by row p-1. Both scorers are tested on
known text (tests/test_audit_local.py, tests/test_local.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bakeoff.audit._scorer_wire import (
    MAX_BODY_BYTES,
    answer_bytes,
    count,
    listed,
    logprob,
    mapping,
    max_tokens_of,
    refuse,
    string,
)
from bakeoff.audit._scorer_wire import (
    ReferenceScorerError as ReferenceScorerError,
)
from bakeoff.endpoints import PostError, post_json
from bakeoff.lineups import purposes
from bakeoff.local._llama import no_repacked_weights

if TYPE_CHECKING:
    from bakeoff.audit._types import Messages


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
    pieces: list[str] | None = None
    """Each token's text (to line tokens up with what an endpoint reports)."""
    above: np.ndarray | None = None
    """Reference probability of the tokens ranked above each token (the PIT's deterministic part:
    what `StoredScorer` keeps, so a re-analysis draws the same PIT from the same generator)."""

    @property
    def mean_logprob(self) -> float:
        return float(self.logprobs.mean()) if self.logprobs.size else 0.0


class LocalReferenceScorer:
    """Teacher forcing on a GGUF with llama.cpp (thread-safe: one evaluation at a time)."""

    def __init__(self, model_path: Path, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = Path(model_path)
        with no_repacked_weights():
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

    def chat_prompt(self, messages: Messages) -> str:
        """The prompt text the reference server builds from these messages (its chat template)."""
        return str(self._fmt(messages=messages).prompt)  # type: ignore[arg-type]

    def prompt_tokens(self, messages: Messages) -> list[int]:
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
        pieces = [self.llm.detokenize([t]).decode("utf-8", "replace") for t in comp]
        return TokenScores(comp, logprobs, ranks, pit, pieces, above)

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
        start = len(seq) - len(comp)
        with self._lock:
            # keep the KV cache of the prompt the last call shared (the reference's and every
            # candidate's sample of a prompt are scored one after another): evaluate from the
            # first token that differs, but at least the last prompt token (its logits row
            # scores the first completion token)
            cached = self.llm.input_ids[: self.llm.n_tokens]
            keep = 0
            for x, y in zip(cached, seq[: max(start - 1, 0)], strict=False):
                if x != y:
                    break
                keep += 1
            self.llm.n_tokens = keep
            self.llm.eval(seq[keep:])
            logits = np.array(self.llm.scores[start - 1 : len(seq) - 1], dtype=np.float64)
        return comp, logits


def piece_id(piece: str) -> int:
    """The id the echo scorer gives a token text: the same in every scorer and every process (a
    stored analysis replayed in another process compares them), never negative."""
    return int.from_bytes(
        hashlib.sha256(piece.encode("utf-8", "surrogatepass")).digest()[:6], "big"
    )


def _text_key(text: str) -> int:
    """A stable negative id standing for a prompt text (Python's `hash` differs per process)."""
    return -1 - int.from_bytes(
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4], "big"
    )


class HttpReferenceScorer:
    """Teacher forcing over HTTP, for a reference served by the user's own server (llama.cpp; vLLM
    has its own subclass, `VllmReferenceScorer`, which `http_reference_scorer` picks):
    `/v1/completions` with `echo: true` and `logprobs: k` returns the log-probability of every
    prompt token, so the prompt text + the completion text, sent with `max_tokens: 1`, gives each
    completion token's log-probability under the reference.

    - The completion's tokens are those whose `text_offset` falls inside the completion text.
    - `shift`: which entry of `token_logprobs` scores a token. Standard servers (vLLM, llama.cpp's
      server) put log p(token_i | tokens before i) at i (shift 0, the first entry being null);
      llama-cpp-python's server puts it one entry later (shift 1). `None` detects it: a null first
      entry means 0, otherwise 1.
    - Ranks and the PIT come from the top-k list: exact when the token is in the top k, a lower
      bound (rank k, the top-k mass) otherwise. The sampled-regime test uses the log-probabilities,
      which are exact.
    - The chat template: `chat_template` (a Jinja chat template, as in a tokenizer config), else the
      server's own (`/apply-template` of llama.cpp's server, or vLLM's `/tokenize` + `/detokenize`).
    """

    def __init__(  # noqa: PLR0913 -- a scorer server: where, who, its template and its limits
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        top_logprobs: int = 5,
        shift: int | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        self._key = api_key
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._template = chat_template
        self._bos, self._eos = bos_token, eos_token
        self.k = top_logprobs
        self.shift = shift
        self.timeout = timeout
        """Seconds for a whole call (connect, headers, body): a deadline, not a per-read timeout."""
        self.max_body_bytes = MAX_BODY_BYTES
        """The most an answer's body may hold; a longer one is cut there, unread, and refused."""
        self.completions: Callable[[dict[str, Any]], Any] | None = None
        """How a scoring body reaches `/v1/completions` in a run: through the scorer endpoint's
        call policy, billed (`_scorer_policy.PolicyCompletions`); None: `_post`."""
        self._texts: dict[tuple[int, ...], str] = {}
        self._memo: dict[tuple[str, str], Any] = {}
        self._prompt_len: dict[str, int] = {}
        self._last_prompt_tokens: int | None = None
        self._last_tokens: list[str] = []
        self._lock = threading.Lock()

    # -- HTTP ----------------------------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any], tokens: int | None = None) -> Any:
        """One bounded call (`bakeoff.endpoints.post_json`: the whole call within `timeout`, error
        bodies redacted; its `PostError` raised as a `ReferenceScorerError`), reading at most
        `max_body_bytes` — or, for an answer about `tokens` tokens, what that many tokens'
        log-probabilities take (`answer_bytes`): so parsing never builds more than the request can
        account for."""
        limit = self.max_body_bytes
        if tokens is not None:
            limit = min(limit, answer_bytes(tokens, self.k))
        try:
            return post_json(
                url,
                body,
                self._headers,
                timeout=self.timeout,
                max_bytes=limit,
                secret=self._key,
                cap_note=" (what the tokens sent account for, at most max_body_bytes)",
            )
        except PostError as e:
            raise ReferenceScorerError(str(e), e.status) from None

    # -- the prompt ----------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text: `chat_template`, else the server's (a route the server does not have
        — `_NO_ROUTE` — falls through to the next; any other failure is raised)."""
        if self._template is not None:
            return render_chat_template(self._template, messages, self._bos, self._eos)
        import orjson

        bound = 4 * len(orjson.dumps(messages)) + 65536  # the messages + a template's own text
        try:  # llama.cpp's server
            out = self._post(self.root + "/apply-template", {"messages": messages})
            return _prompt_text(out, "/apply-template", bound)
        except ReferenceScorerError as e:
            if e.status not in _NO_ROUTE:
                raise
        try:  # vLLM
            out = self._post(
                self.root + "/tokenize",
                {"model": self.model, "messages": messages, "add_generation_prompt": True},
            )
            toks = listed(_field(out, "tokens", "/tokenize"), "/tokenize tokens", bound)
            for i, t in enumerate(toks):
                count(t, f"/tokenize tokens[{i}]", 2**31)
            out = self._post(self.root + "/detokenize", {"model": self.model, "tokens": toks})
            return _prompt_text(out, "/detokenize", bound)
        except ReferenceScorerError as e:
            if e.status not in _NO_ROUTE:
                raise
            raise ReferenceScorerError(
                f"{self.root} offers no chat template (/apply-template or /tokenize with messages): "
                "set audit.scorer_template"
            ) from e

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """A key for `score()` whose length is the prompt's token count (from the echo)."""
        text = self.chat_prompt(messages)
        with self._lock:
            if text not in self._prompt_len:
                n_echo = len(self._echo(text, "")[0])
                # the server's own count when it reports usage (echoes may leave tokens out),
                # bounded by the text sent (checked in `_echo`)
                self._prompt_len[text] = int(self._last_prompt_tokens or n_echo)
        n = self._prompt_len[text]
        # negative, so no prompt "token" equals a completion token's id (`piece_id`)
        key = [_text_key(text), *range(-2, -n - 1, -1)] if n else []
        self._texts[tuple(key)] = text
        return key

    # -- scoring -------------------------------------------------------------------------------------
    def _echo(self, prompt: str, completion: str) -> tuple[list[int], list[Any], list[Any]]:
        """(indices of the completion's tokens — of the prompt's when `completion` is empty —,
        token_logprobs, top_logprobs) of prompt + completion, every field checked
        (`_checked_echo`).

        Tokens are located from the end of the echo by their text, not by `text_offset`: servers
        differ in how they render special tokens (llama-cpp-python renders them as '' and leaves
        out the first token), but the echo's last tokens always spell the completion."""
        body = {
            "model": self.model,
            "prompt": prompt + completion,
            "max_tokens": 1,
            "echo": True,
            "logprobs": self.k,
            **purposes.GREEDY,
        }
        url = self.base_url + "/completions"
        answer = (
            self.completions(body)
            if self.completions is not None
            else self._post(url, body, max_tokens_of(prompt + completion) + 1)
        )
        tokens, token_lps, tops, n_prompt = _checked_echo(
            answer,
            url,
            prompt,
            completion,
            self.k,
        )
        self._last_prompt_tokens = n_prompt
        self._last_tokens = tokens
        if self.shift is None:
            self.shift = 0 if token_lps and token_lps[0] is None else 1
        # the end of the echo: one generated token after it, or none (an immediate stop)
        end = len(tokens)
        for k in (len(tokens) - 1, len(tokens)):
            if k >= 0 and "".join(tokens[:k]).endswith(completion):
                end = k
                break
        if not completion:
            return list(range(end)), token_lps, tops
        start, length = end, 0
        while start > 0 and length < len(completion):
            start -= 1
            length += len(tokens[start])
        return list(range(start, end)), token_lps, tops

    def score(
        self, prompt_tokens: list[int], completion: str, rng: np.random.Generator | None = None
    ) -> TokenScores:
        rng = rng or np.random.default_rng(0)
        text = self._texts.get(tuple(prompt_tokens))
        if text is None:
            raise ReferenceScorerError("score() needs a key from prompt_tokens() of this scorer")
        key = (text, completion)
        with self._lock:
            if key not in self._memo:
                self._memo[key] = self._per_token(text, completion)
            lps, ranks, above, pieces = self._memo[key]
        # the echo gives token texts, not ids: the same text is the same token, in every scorer
        # (what the greedy test compares to find where two outputs part, and the likelihood
        # ratio to check two scorers tokenized alike)
        ids = [piece_id(p) for p in pieces]
        pit = np.minimum(above + rng.random(len(lps)) * np.exp(lps), 1.0)
        return TokenScores(ids, lps, ranks, pit, pieces, above)

    def _per_token(
        self, text: str, completion: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        if not completion:
            z = np.zeros(0)
            return z, z.astype(int), z, []
        idx, token_lps, tops = self._echo(text, completion)
        s = self.shift or 0
        lps, ranks, above, pieces = [], [], [], []
        for i in idx:
            j = i + s
            if j >= len(token_lps) or token_lps[j] is None:
                continue
            lp = token_lps[j]
            top = tops[j] if j < len(tops) and tops[j] else {}
            higher = [v for v in top.values() if v is not None and v > lp + 1e-9]
            lps.append(lp)
            pieces.append(self._last_tokens[i] if i < len(self._last_tokens) else "")
            ranks.append(len(higher))
            above.append(float(np.sum(np.exp(higher))) if higher else 0.0)
        return np.array(lps, dtype=float), np.array(ranks, dtype=int), np.array(above), pieces


_NO_ROUTE = (400, 404, 405, 501)
"""Statuses that say a server has no such route (or takes no messages there)."""


def _field(out: Any, name: str, route: str) -> Any:
    if not isinstance(out, dict):
        raise refuse(f"the {route} answer", out, "an object")
    if name not in out:
        raise ReferenceScorerError(f"the {route} answer has no `{name}`")
    return out[name]


def _prompt_text(out: Any, route: str, bound: int) -> str:
    """The `prompt` of a template route's answer: a string no longer than the messages allow."""
    prompt = string(_field(out, "prompt", route), f"{route} prompt")
    if len(prompt) > bound:
        raise refuse(f"{route} prompt", f"a text of {len(prompt)} characters", f"≤ {bound}")
    return prompt


def _echo_logprobs(out: Any) -> dict[str, Any] | None:
    """`choices[0].logprobs` of a completions answer, when it has the OpenAI shape."""
    choices = out.get("choices") if isinstance(out, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    lp = first.get("logprobs") if isinstance(first, dict) else None
    if not isinstance(lp, dict):
        return None
    tokens, lps = lp.get("tokens"), lp.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(lps, list) or len(tokens) != len(lps):
        return None
    return lp


def _checked_echo(
    out: Any, url: str, prompt: str, completion: str, k: int
) -> tuple[list[str], list[float | None], list[dict[str, float] | None], int | None]:
    """(token texts, log-probabilities, top-k maps, the server's prompt token count) of an echo
    answer, each field checked: token texts strings (null: ''), log-probabilities finite and ≤ 0
    (null where nothing conditions the token), top-k maps of at most k + 1 such numbers, counts
    bounded by the text sent — else a `ReferenceScorerError` naming the field."""
    lp = _echo_logprobs(out)
    if lp is None:
        raise ReferenceScorerError(
            f"{url} answered no echo log-probabilities (choices[0]."
            "logprobs with `tokens` and `token_logprobs`): this server does not score prompts"
        )
    bound = max_tokens_of(prompt + completion) + 1
    where = "choices[0].logprobs"
    tokens = [
        "" if t is None else string(t, f"{where}.tokens[{i}]")
        for i, t in enumerate(listed(lp["tokens"], f"{where}.tokens", bound))
    ]
    lps = [
        None if v is None else logprob(v, f"{where}.token_logprobs[{i}]")
        for i, v in enumerate(lp["token_logprobs"])
    ]
    tops: list[dict[str, float] | None] = []
    raw_tops = lp.get("top_logprobs")
    for i, top in enumerate(listed(raw_tops or [], f"{where}.top_logprobs", len(tokens))):
        if top is None:
            tops.append(None)
            continue
        f = f"{where}.top_logprobs[{i}]"
        tops.append(
            {
                string(t, f): logprob(v, f"{f}[{t!r}]")
                for t, v in mapping(top, f, max(k, 0) + 1).items()
                if v is not None
            }
        )
    usage = out.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise refuse("usage", usage, "an object")
    n = (usage or {}).get("prompt_tokens")
    n_prompt = None if n is None else count(n, "usage.prompt_tokens", bound)
    return tokens, lps, tops, n_prompt


def render_chat_template(
    template: str, messages: Messages, bos_token: str = "", eos_token: str = ""
) -> str:
    """A Hugging Face-style Jinja chat template rendered as `transformers` does (sandboxed, with
    `raise_exception`, the generation prompt added)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )
