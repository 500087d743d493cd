"""`instructions`: verifiable formatting constraints (IFEval-style), several per item.

Each item asks for a short text on a topic under 1 (`easy`), 2 (`medium`) or 3-4 (`hard`) constraints,
drawn from compatible families. Each constraint is a small checker. Two scores, as in IFEval:
`strict` (every constraint holds on the reply as sent) and `loose` (holds on at least one lenient
variant of the reply: markdown emphasis removed, first or last line dropped). The primary score is
strict; `constraints` (the fraction of constraints met) is kept for partial credit.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

TOPICS = [
    "tea",
    "bicycles",
    "rain",
    "libraries",
    "bread",
    "volcanoes",
    "chess",
    "gardens",
    "owls",
    "bridges",
    "maps",
    "honey",
    "trains",
    "islands",
    "clocks",
    "kites",
]
FILLER = [
    "people",
    "often",
    "enjoy",
    "the",
    "quiet",
    "moments",
    "around",
    "simple",
    "things",
    "like",
    "morning",
    "light",
    "and",
    "good",
    "company",
    "which",
    "makes",
    "each",
    "day",
    "feel",
    "calm",
    "steady",
    "bright",
    "warm",
    "careful",
    "patient",
    "open",
]
KEYWORDS = [
    "harbor",
    "silver",
    "lantern",
    "meadow",
    "compass",
    "velvet",
    "orbit",
    "pepper",
    "canyon",
    "ember",
    "willow",
    "prism",
]
FORBIDDEN = ["very", "really", "thing", "stuff", "nice", "basically", "actually", "literally"]
_WORD = re.compile(r"[A-Za-z0-9']+")
_ENDS = re.compile(r"([.!?]+)")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    """Runs of text each closed by `.`, `!` or `?` (what `[^.!?]+[.!?]+` finds, cut in one pass:
    that pattern rescanned the rest of a reply without a stop from every character, quadratic)."""
    parts = _ENDS.split(text)  # text, stop, text, stop, ..., the unclosed tail
    closed = (parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2) if parts[i])
    return [s for s in closed if words(s)]


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


_BULLET = re.compile(r"^[^\S\n]*+[-*] \S.*$", re.M)
r"""Leading blanks within the line only: `^\s*` ran on through every blank line below each one."""


def bullets(text: str) -> list[str]:
    return _BULLET.findall(text)


def _unfence(t: str) -> str:
    r"""A JSON reply without its Markdown fence (str methods: `\s*```$` searched from every blank
    of a run of them, quadratic)."""
    for head in ("```json", "```"):
        if t.startswith(head):
            t = t[len(head) :].lstrip()
            break
    return t[:-3].rstrip() if t.endswith("```") else t


class ConstraintArgs(TypedDict, total=False):
    """A constraint's parameters (stored in its item's target): a count, words or a phrase."""

    n: int
    words: list[str]
    phrase: str


@dataclass(frozen=True)
class Constraint:
    kind: str
    args: ConstraintArgs

    @property
    def text(self) -> str:
        a = self.args
        return {
            "min_words": lambda: f"Use at least {a['n']} words.",
            "max_words": lambda: f"Use fewer than {a['n']} words.",
            "min_sentences": lambda: f"Write at least {a['n']} sentences.",
            "paragraphs": lambda: f"Write exactly {a['n']} paragraphs, separated by a blank line.",
            "bullets": lambda: (
                f"Include exactly {a['n']} bullet points, each line starting with '- '."
            ),
            "no_commas": lambda: "Do not use any commas.",
            "lowercase": lambda: (
                "Write everything in lowercase letters; no capital letters at all."
            ),
            "uppercase": lambda: "Write everything in CAPITAL LETTERS.",
            "keywords": lambda: (
                "Include the words " + " and ".join(f"'{k}'" for k in a["words"]) + "."
            ),
            "forbidden": lambda: (
                "Do not use the words " + " or ".join(f"'{k}'" for k in a["words"]) + "."
            ),
            "start": lambda: f"Begin your reply with the exact phrase '{a['phrase']}'.",
            "end": lambda: (
                f"End your reply with the exact phrase '{a['phrase']}'. Nothing may follow it."
            ),
            "json": lambda: (
                'Reply with valid JSON only (an object with a key "text"), no other text.'
            ),
            "placeholders": lambda: (
                f"Include at least {a['n']} placeholders in square brackets, like [name]."
            ),
            "sections": lambda: (
                f"Split your reply into {a['n']} sections; start each with 'SECTION' and its number, like SECTION 1."
            ),
        }[self.kind]()

    def check(self, text: str) -> bool:
        rule = _CHECKS.get(self.kind)
        if rule is None:
            raise ValueError(self.kind)
        return rule(text, self.args)


def _cased(text: str, case: Callable[[str], str]) -> bool:
    return text == case(text) and any(c.isalpha() for c in text)


def _has_word(text: str, w: str) -> bool:
    return re.search(rf"\b{re.escape(w)}\b", text.lower()) is not None


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(_unfence(text.strip())), dict)
    except ValueError:
        return False


_CHECKS: dict[str, Callable[[str, ConstraintArgs], bool]] = {
    "min_words": lambda t, a: len(words(t)) >= a["n"],
    "max_words": lambda t, a: len(words(t)) < a["n"],
    "min_sentences": lambda t, a: len(sentences(t)) >= a["n"],
    "paragraphs": lambda t, a: len(paragraphs(t)) == a["n"],
    "bullets": lambda t, a: len(bullets(t)) == a["n"],
    "no_commas": lambda t, a: "," not in t,
    "lowercase": lambda t, a: _cased(t, str.lower),
    "uppercase": lambda t, a: _cased(t, str.upper),
    "keywords": lambda t, a: all(_has_word(t, w) for w in a["words"]),
    "forbidden": lambda t, a: not any(_has_word(t, w) for w in a["words"]),
    "start": lambda t, a: t.strip().lower().startswith(a["phrase"].lower()),
    "end": lambda t, a: t.strip().lower().endswith(a["phrase"].lower()),
    "json": lambda t, a: _json_object(t),
    "placeholders": lambda t, a: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= a["n"],
    "sections": lambda t, a: len(re.findall(r"^[^\S\n]*+SECTION\s++\d", t, re.M)) == a["n"],
}
"""Whether a reply meets a constraint, by kind."""


# families that cannot be combined (one of each at most), and a reply that does nothing meets none of
# the "positive" ones — so a blank or evasive reply always fails
_EXCLUSIVE = [
    {"lowercase", "uppercase", "json"},
    {"min_words", "max_words"},
    {"paragraphs", "sections", "json", "bullets"},
    {"sections", "lowercase"},
    {"json", "start", "end", "min_sentences", "placeholders"},
]
_POSITIVE = [
    "min_words",
    "min_sentences",
    "paragraphs",
    "bullets",
    "keywords",
    "start",
    "end",
    "json",
    "placeholders",
    "sections",
]
_ALL = [*_POSITIVE, "max_words", "no_commas", "lowercase", "uppercase", "forbidden"]


def _make(kind: str, r: random.Random) -> Constraint:
    if kind == "min_words":
        return Constraint(kind, {"n": r.choice([20, 30, 40])})
    if kind == "max_words":
        return Constraint(kind, {"n": r.choice([60, 80, 100])})
    if kind == "min_sentences":
        return Constraint(kind, {"n": r.randint(2, 4)})
    if kind in ("paragraphs", "sections"):
        return Constraint(kind, {"n": r.randint(2, 3)})
    if kind == "bullets":
        return Constraint(kind, {"n": r.randint(2, 4)})
    if kind in ("keywords", "forbidden"):
        pool = KEYWORDS if kind == "keywords" else FORBIDDEN
        return Constraint(kind, {"words": r.sample(pool, r.randint(1, 2))})
    if kind == "start":
        return Constraint(kind, {"phrase": r.choice(["Here is my answer", "In short", "To begin"])})
    if kind == "end":
        return Constraint(kind, {"phrase": r.choice(["That is all.", "Thank you.", "The end."])})
    if kind == "placeholders":
        return Constraint(kind, {"n": r.randint(1, 3)})
    return Constraint(kind, {})


def _compatible(chosen: list[str], kind: str) -> bool:
    if kind in chosen:
        return False
    return all(not (kind in fam and any(c in fam for c in chosen)) for fam in _EXCLUSIVE)


def constraints_for(tier: str, r: random.Random) -> list[Constraint]:
    n = {"easy": 1, "medium": 2, "hard": r.randint(3, 4)}[tier]
    chosen = [r.choice(_POSITIVE)]
    while len(chosen) < n:
        kind = r.choice(_ALL)
        if _compatible(chosen, kind):
            chosen.append(kind)
    return [_make(k, r) for k in chosen]


def _loose_variants(text: str) -> list[str]:
    t = text.replace("**", "").replace("__", "")
    lines = text.split("\n")
    out = [text, t]
    if len(lines) > 1:
        out += [
            "\n".join(lines[1:]).strip(),
            "\n".join(lines[:-1]).strip(),
            "\n".join(lines[1:-1]).strip(),
        ]
    return out


def build_reply(topic: str, cons: list[Constraint]) -> str:
    """A reply meeting every constraint (the oracle used to prove the checkers accept good answers)."""
    kinds = {c.kind: c.args for c in cons}
    kw = list(kinds.get("keywords", {}).get("words", []))
    if "json" in kinds:
        jwords = [topic, *kw, "are", "worth", "a", "look"]
        jwords += (FILLER * 4)[: max(0, kinds.get("min_words", {"n": 0})["n"] + 3 - len(jwords))]
        return json.dumps({"text": " ".join(jwords)})
    n_par = kinds.get("paragraphs", kinds.get("sections", {"n": 1}))["n"]
    n_sent = max(kinds.get("min_sentences", {"n": 2})["n"], 2)
    target_words = kinds.get("min_words", {"n": 0})["n"] + 5
    parts: list[str] = []
    fill = iter(FILLER * 50)
    for p in range(n_par):
        sents: list[str] = []
        for s in range(n_sent):
            ws = [topic] + [next(fill) for _ in range(6)]
            if p == 0 and s == 0:
                ws += kw
                ws += [
                    f"[{x}]"
                    for x in ["name", "place", "date"][: kinds.get("placeholders", {"n": 0})["n"]]
                ]
            sents.append(" ".join(ws) + ".")
        body = " ".join(sents)
        if "sections" in kinds:
            body = f"SECTION {p + 1}\n{body}"
        parts.append(body)
    while len(words("\n\n".join(parts))) < target_words:
        parts[-1] += " " + " ".join([topic] + [next(fill) for _ in range(6)]) + "."
    text = "\n\n".join(parts)
    if "bullets" in kinds:
        text += "\n" + "\n".join(f"- {topic} point {i + 1}" for i in range(kinds["bullets"]["n"]))
    if "start" in kinds:
        text = kinds["start"]["phrase"] + ("\n" if "sections" in kinds else " ") + text
    if "end" in kinds:
        text = text + " " + kinds["end"]["phrase"]
    if "uppercase" in kinds:
        text = text.upper()
    elif "lowercase" in kinds or "sections" not in kinds:
        text = text.lower() if "lowercase" in kinds else text[0].upper() + text[1:]
    return text


class InstructionsSuite:
    name = "instructions"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "Verifiable formatting constraints (IFEval-style), strict and loose accuracy."
    default_size = 30
    tiers = ("easy", "medium", "hard")

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            r = rng("instructions", seed, i, attempt)
            tier = self.tiers[i % 3]
            topic = r.choice(TOPICS)
            cons = constraints_for(tier, r)
            prompt = f"Write about {topic}. " + " ".join(c.text for c in cons)
            return Item(
                id=f"instructions-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": prompt}],
                params={"max_tokens": 400},
                target=[{"kind": c.kind, "args": c.args} for c in cons],
                meta={"topic": topic},
            )

        return unique_items(n, make)

    @staticmethod
    def _constraints(item: Item) -> list[Constraint]:
        return [Constraint(c["kind"], c["args"]) for c in item.target]

    def score(self, item: Item, result: CallResult) -> list[Score]:
        cons = self._constraints(item)
        text = result.text
        strict = [c.check(text) for c in cons]
        variants = _loose_variants(text)
        loose_ok = any(all(c.check(v) for c in cons) for v in variants if v)
        failed = [c.kind for c, ok in zip(cons, strict, strict=True) if not ok]
        detail = "all met" if not failed else "failed: " + ", ".join(failed)
        return [
            Score(scorer="strict", value=float(all(strict)), passed=all(strict), detail=detail),
            Score(scorer="loose", value=float(loose_ok), passed=loose_ok),
            Score(scorer="constraints", value=sum(strict) / len(strict)),
        ]

    def reference_reply(self, item: Item) -> Reply:
        return Reply(content=build_reply(item.meta["topic"], self._constraints(item)))
