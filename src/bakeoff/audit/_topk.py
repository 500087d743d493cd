"""Greedy margins from the reference endpoint's own top log-probabilities: no scorer, no tokenizer.

Most hosted providers return, for the tokens they generate, `logprobs` with `top_logprobs` (the k
likeliest tokens at each position, k = 5..20). Where a candidate's greedy output first parts from
the reference's, the text before is common, so the reference's own top-k at that position says how
sure it was: log p(reference's token) − log p(candidate's token) when the candidate's continuation
begins with one of the top-k token strings (the likeliest such one: the smallest margin), and a
lower bound, its token minus the k-th, when it begins with none (the candidate's token was not
among the reference's k likeliest). Aligned by text: the byte offsets of the reference's returned
tokens in its own output.

Read from the reference's STORED greedy calls (their `logprobs_json`), so a re-analysis gives the
same verdict without a call. A reference call whose log-probabilities are missing, malformed or do
not spell its text is left out — every such prompt, whatever the candidates answered (a choice that
depends on the reference alone keeps the test valid), counted by its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from bakeoff.audit._greedy import Divergence

MAX_TOP = 64
"""More alternatives than this at one position is not an answer to `top_logprobs` (≤ 20)."""

REASONS = {
    "missing": "the reference returned no log-probabilities",
    "no_top": "the reference returned log-probabilities without top_logprobs",
    "malformed": "the reference's log-probabilities are malformed",
    "unaligned": "the reference's returned tokens do not spell its text",
}
"""Why a reference call's top-k cannot give margins, as the evidence counts them."""


@dataclass(frozen=True, slots=True)
class RefToken:
    """One token the reference generated: the bytes it spells, its log-probability, and the top-k
    alternatives (bytes, log-probability) at its position."""

    text: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]


@dataclass(frozen=True, slots=True)
class TopK:
    """A reference answer's tokens aligned to its text (`tokens` spell `text` after `shift` bytes
    of leading whitespace the provider stripped from the content), or why not (`reason`)."""

    tokens: tuple[RefToken, ...] = ()
    text: bytes = b""
    shift: int = 0
    reason: str | None = None

    @property
    def k(self) -> int:
        """The most alternatives given at one position."""
        return max((len(t.top) for t in self.tokens), default=0)


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) and f <= 1e-6 else None


def _spelled(e: dict[str, object]) -> bytes | None:
    """What one entry spells: its `bytes` (OpenAI's UTF-8 bytes of the token) when given, else its
    `token` string."""
    b = e.get("bytes")
    if isinstance(b, list) and b and all(type(x) is int and 0 <= x < 256 for x in b):
        return bytes(b)
    if b is not None and not isinstance(b, list):
        return None
    t = e.get("token")
    return t.encode("utf-8", "surrogatepass") if isinstance(t, str) else None


def _entry(e: object) -> RefToken | str:
    """One `logprobs.content` entry as a `RefToken`, or the reason it is not one."""
    if not isinstance(e, dict):
        return "malformed"
    text, lp = _spelled(e), _number(e.get("logprob"))
    if text is None or lp is None:
        return "malformed"
    top = e.get("top_logprobs")
    if top is None or top == []:
        return "no_top"
    if not isinstance(top, list) or len(top) > MAX_TOP:
        return "malformed"
    alts: list[tuple[bytes, float]] = []
    for a in top:
        at = _spelled(a) if isinstance(a, dict) else None
        alp = _number(a.get("logprob")) if isinstance(a, dict) else None
        if at is None or alp is None:
            return "malformed"
        alts.append((at, alp))
    return RefToken(text, lp, tuple(alts))


def reference_topk(logprobs_json: str | None, output_text: str | None) -> TopK:
    """The reference's greedy answer (its stored logprobs and text) as aligned top-k tokens, or a
    `TopK` with only its `reason` (a key of `REASONS`): never an exception, whatever was stored."""
    if not logprobs_json:
        return TopK(reason="missing")
    try:
        entries = orjson.loads(logprobs_json)
    except orjson.JSONDecodeError:
        return TopK(reason="malformed")
    if not isinstance(entries, list) or not entries:
        return TopK(reason="missing" if entries in ([], None) else "malformed")
    tokens: list[RefToken] = []
    for e in entries:
        t = _entry(e)
        if isinstance(t, str):
            return TopK(reason=t)
        tokens.append(t)
    spelled = b"".join(t.text for t in tokens)
    text = (output_text or "").encode("utf-8", "surrogatepass")
    if spelled == text:
        return TopK(tuple(tokens), spelled)
    stripped = spelled.lstrip()
    if stripped == text.lstrip() and text == stripped:
        return TopK(tuple(tokens), spelled, shift=len(spelled) - len(stripped))
    return TopK(reason="unaligned")


def _common(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _piece(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def topk_divergence(
    ref: TopK,
    candidate: str,
    *,
    reference_finish: str | None = None,
    candidate_finish: str | None = None,
) -> Divergence | None:
    """Where `candidate` first parts from the reference's answer (`ref`, aligned), and the
    reference's margin there from its own top-k; None when they do not part (one is the other cut by
    the token limit). `ref` must be aligned (`ref.reason is None`)."""
    if ref.reason is not None:
        raise ValueError(f"no aligned top-k: {ref.reason}")
    r = ref.text
    # leading whitespace is no evidence (a provider may strip it from the content, or not): the
    # candidate's, whatever it is, counts as the reference's own (its tokens spell it)
    lead = len(r) - len(r.lstrip())
    c = r[:lead] + candidate.encode("utf-8", "surrogatepass").lstrip()
    p = _common(r, c)
    if p == len(r) and p == len(c):
        return None
    offsets, off = [], 0
    for t in ref.tokens:
        offsets.append(off)
        off += len(t.text)
    if p == len(r) or p == len(c):  # one stops where the other goes on
        shorter_finish = reference_finish if p == len(r) else candidate_finish
        if shorter_finish == "length":
            return None
        i = next((j for j, o in enumerate(offsets) if o + len(ref.tokens[j].text) > p), None)
        return Divergence(
            token=len(ref.tokens) if i is None else i,
            margin=None,
            reference_piece="<end>" if i is None else _piece(ref.tokens[i].text),
            candidate_piece="<end>" if p == len(c) else _piece(c[p : p + 8]),
            reference_repeats=False,
        )
    i = next(j for j, o in enumerate(offsets) if o + len(ref.tokens[j].text) > p)
    tok, rest = ref.tokens[i], c[offsets[i] :]
    found = [(s, lp) for s, lp in tok.top if s and rest.startswith(s)]
    if found:
        s, lp = max(found, key=lambda a: a[1])
        margin, bound, cand_piece = tok.logprob - lp, False, s
    else:
        floor = min((lp for _, lp in tok.top), default=tok.logprob)
        margin, bound, cand_piece = tok.logprob - floor, True, rest[: max(1, p - offsets[i] + 1)]
    # the text alone cannot say where the candidate's tokens part: " 10" where the reference had
    # " 1" and then " 5" parts at " 1", not at " 5". An earlier token whose alternative spells the
    # candidate's text across the first differing byte is such a place; the smallest margin of
    # them all is taken (a divergence is counted confident only if every reading of it is)
    for j in range(i):
        longer = [
            (s, lp)
            for s, lp in ref.tokens[j].top
            if offsets[j] + len(s) > p and c[offsets[j] :].startswith(s)
        ]
        if longer:
            s, lp = max(longer, key=lambda a: a[1])
            if ref.tokens[j].logprob - lp < margin:
                i, tok = j, ref.tokens[j]
                margin, bound, cand_piece = tok.logprob - lp, False, s
    before = {t.text for t in ref.tokens[:i]}
    return Divergence(
        token=i,
        margin=margin,
        reference_piece=_piece(tok.text),
        candidate_piece=_piece(cand_piece),
        reference_repeats=not bound and tok.text in before and cand_piece not in before,
        bound=bound,
    )
