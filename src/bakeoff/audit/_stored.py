"""The reference scorer's answers, stored with the run.

Every number a token scorer gives the analysis — a prompt's tokens, and per completion its tokens,
log-probabilities, ranks and the probability ranked above each token — is kept in the store
(`scorer_answers`, per run and role: `reference`, `alt:<name>`). A re-analysis replays them: it
needs neither the model file nor the scorer's server, and it gets the very numbers the run's own
analysis used, so `bakeoff audit --rerun` reproduces the run's verdicts exactly.

The randomised PIT is drawn here, from the stored numbers and the caller's generator, live and
replayed alike (the wrapped scorer's own draw is discarded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import orjson

from bakeoff.audit._errors import AuditError
from bakeoff.audit._scorer import TokenScores
from bakeoff.store import Store

if TYPE_CHECKING:
    from bakeoff.audit._types import Messages, ReferenceScorer, ScorerLoad


class Answer(TypedDict):
    """What is kept of a scorer's answer about one completion (the PIT is drawn anew)."""

    tokens: list[int]
    logprobs: list[float]
    ranks: list[int]
    above: list[float]
    pieces: list[str] | None


def _key(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


class StoredScorer:
    """A token scorer that answers from the run's stored answers, asking the wrapped scorer (loaded
    on first need by `load`) only for what was never stored, and keeping its answers."""

    def __init__(
        self,
        store: Store | None,
        run_id: str,
        role: str,
        load: ScorerLoad | None,
        *,
        answers: dict[str, object] | None = None,
    ) -> None:
        self.store, self.run_id, self.role = store, run_id, role
        self._load = load
        self._inner: ReferenceScorer | None = None
        if answers is None:
            answers = store.scorer_answers(run_id, role) if store is not None else {}
        self._answers: dict[str, object] = dict(answers)
        """key → a prompt's tokens (`list[int]`) or an `Answer`, as stored (JSON)."""
        self._new: dict[str, object] = {}
        self._flushed = 0

    @property
    def answers(self) -> dict[str, object]:
        return self._answers

    @property
    def replayed(self) -> int:
        """Answers that came from the store rather than from the scorer itself."""
        return len(self._answers) - len(self._new) - self._flushed

    def _live(self, what: str) -> ReferenceScorer:
        if self._inner is None:
            if self._load is None:
                raise AuditError(
                    f"the stored analysis holds no {self.role} scorer answer for {what}, and no "
                    "scorer is available to compute it (re-analyse with the scorer's model file or "
                    "server at hand)"
                )
            self._inner = self._load()
        return self._inner

    def _put(self, key: str, answer: list[int] | Answer) -> None:
        self._answers[key] = answer
        self._new[key] = answer

    def flush(self) -> int:
        """Store the answers computed since the last flush; returns how many."""
        n = len(self._new)
        self._flushed += n
        if self._new and self.store is not None and not self.store.readonly:
            self.store.put_scorer_answers(self.run_id, self.role, self._new)
        self._new = {}
        return n

    # -- the scorer interface ----------------------------------------------------------------------
    def prompt_tokens(self, messages: Messages) -> list[int]:
        key = _key("prompt", messages)
        if key not in self._answers:
            toks = self._live("a prompt").prompt_tokens(messages)
            self._put(key, [int(t) for t in toks])
        stored = self._answers[key]
        if not isinstance(stored, list) or not all(isinstance(t, int) for t in stored):
            raise ValueError(f"a stored {self.role} scorer answer about a prompt is not its tokens")
        return list(stored)

    def score(
        self, prompt_tokens: list[int], completion: str, rng: np.random.Generator | None = None
    ) -> TokenScores:
        rng = rng or np.random.default_rng(0)
        key = _key("score", list(prompt_tokens), completion)
        if key not in self._answers:
            s = self._live("a completion").score(
                prompt_tokens, completion, np.random.default_rng(0)
            )
            self._put(key, _answer(s))
        a = _stored_answer(self._answers[key], self.role)
        lps = np.asarray(a["logprobs"], dtype=float)
        above = np.asarray(a["above"], dtype=float)
        pit = np.minimum(above + rng.random(len(lps)) * np.exp(lps), 1.0)
        return TokenScores(
            list(a["tokens"]),
            lps,
            np.asarray(a["ranks"], dtype=int),
            pit,
            a["pieces"],
            above,
        )

    def score_many(self, pairs: list[tuple[list[int], str]]) -> None:
        """Score what was never stored, many per request where the wrapped scorer can."""
        todo = [(p, c) for p, c in pairs if _key("score", list(p), c) not in self._answers]
        if not todo:
            return
        inner = self._live("a completion")
        many: Callable[[list[tuple[list[int], str]]], None] | None = getattr(
            inner, "score_many", None
        )
        if many is not None:
            many(todo)
        for p, c in todo:
            self.score(p, c)


def _answer(s: TokenScores) -> Answer:
    """What is kept of a scorer's answer: every deterministic number (the PIT is drawn anew)."""
    lps = np.asarray(s.logprobs, dtype=float)
    if not np.all(np.isfinite(lps)):
        from bakeoff.audit._scorer import ReferenceScorerError

        raise ReferenceScorerError("the scorer answered a non-finite log-probability")
    above = s.above if s.above is not None else np.zeros(len(lps))
    return {
        "tokens": [int(t) for t in s.tokens],
        "logprobs": lps.tolist(),
        "ranks": np.asarray(s.ranks, dtype=int).tolist(),
        "above": np.asarray(above, dtype=float).tolist(),
        "pieces": None if s.pieces is None else [str(p) for p in s.pieces],
    }


def _stored_answer(a: object, role: str) -> Answer:
    """A stored answer about a completion, checked to have an answer's fields (a bundle's answers
    are read from a file anyone may have written)."""
    keys = ("tokens", "logprobs", "ranks", "above")
    if not isinstance(a, dict) or not all(isinstance(a.get(k), list) for k in keys):
        raise ValueError(f"a stored {role} scorer answer about a completion lacks its numbers")
    pieces = a.get("pieces")
    return Answer(
        tokens=a["tokens"],
        logprobs=a["logprobs"],
        ranks=a["ranks"],
        above=a["above"],
        pieces=pieces if isinstance(pieces, list) else None,
    )
