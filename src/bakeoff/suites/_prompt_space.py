"""The audit's private prompt space: open-ended requests composed from parts, drawn by a seed.

A provider that wants to serve audit prompts from the real model and everything else from a
cheaper one must recognise them. Fixed prompts, or a few fixed templates around a topic, match a
pattern whatever the topic. Here a prompt is composed from a task shape (~20), one of several
phrasings of it, a subject (an adjective and a noun, or an invented name), and optional framing
— an opener, an audience, a constraint — in varying order and case, so no small set of patterns
covers the space (over 10^9 prompts), and each audit's own seed picks ones never sent before.
Prompt i of a seed depends on the seed and i alone.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

_ADJ = (  # noqa: SIM905 (a word list reads better as words)
    "rusty quiet abandoned tiny enormous forgotten crowded floating golden wooden frozen noisy "
    "hidden ancient borrowed broken patient curious lonely busy slow tangled painted salty foggy "
    "bright hollow secret stubborn gentle muddy glass paper copper velvet midnight northern rural "
    "coastal underground spare second-hand handmade overgrown shared striped unfinished electric "
    "silent clever soggy brave crooked dusty"
).split()
_NOUN = (  # noqa: SIM905 (a word list reads better as words)
    "lighthouse bicycle kettle orchard harbour notebook violin tunnel bakery glacier lantern "
    "ferry telescope meadow typewriter windmill canyon staircase umbrella greenhouse compass "
    "chessboard quarry marketplace balcony library postcard fountain tram workshop garden bridge "
    "island volcano beehive river forest castle village kite clock museum pier cabin orchestra "
    "recipe suitcase radio attic theatre well mailbox puzzle snowstorm laundry vineyard "
    "observatory sailboat farmhouse subway satellite carousel teapot backpack ladder mirror "
    "hammock anthill barn rowboat map candle ribbon fence tractor"
).split()
_SYL = (  # noqa: SIM905 (a word list reads better as words)
    "ka lo mi ren tas vel or bri dun ze pa sil mor tek an qui fen ho lu gar yel"
).split()
_WHO = (
    "a ten-year-old",
    "a busy engineer",
    "my grandmother",
    "a new neighbour",
    "someone who has never seen one",
    "a tired student",
    "a visiting tourist",
    "a curious robot",
    "a sceptical friend",
)
_OPEN = (
    *([""] * 6),
    "Please ",
    "Could you ",
    "I'd like you to ",
    "Quick task: ",
    "Just for fun, ",
    "Would you ",
    "Can you ",
    "Try to ",
    "Your job: ",
    "If you can, ",
)
_OPEN_Q = ("", "", "", "Quick question: ", "I wonder, ", "Tell me, ", "Honestly, ", "So, ")
_GREET = (
    *([""] * 12),
    "Hi! ",
    "Okay. ",
    "Hello there. ",
    "Here is a request. ",
    "Hey. ",
    "Good morning! ",
    "One more thing. ",
    "Thanks in advance. ",
)
_CLOSE = (
    "",
    "",
    "",
    " Keep it short.",
    " Use simple words.",
    " No more than three sentences.",
    " Make it a little funny.",
    " Be specific.",
    " Avoid clichés.",
    " Write in the present tense.",
    " Start with a question.",
    " Mention a colour.",
)
# task shapes: each a few phrasings; {s} the subject, {w} an audience, {o} a second subject
_SHAPES: tuple[tuple[str, ...], ...] = (
    ("describe {s}", "give a short description of {s}", "paint a picture in words of {s}"),
    ("explain {s} to {w}", "how would you explain {s} to {w}", "tell {w} what {s} is like"),
    ("list three things about {s}", "name a few facts about {s}", "jot down some notes on {s}"),
    ("compare {s} with {o}", "what do {s} and {o} have in common", "contrast {s} and {o}"),
    ("write a tiny story about {s}", "tell a story in which {s} turn up", "begin a tale about {s}"),
    ("write a short poem on {s}", "compose four lines about {s}", "make up a rhyme about {s}"),
    ("write a dialogue about {s}", "imagine two people arguing over {s}", "script a chat on {s}"),
    ("give advice to someone who owns {s}", "what tips would you give about {s}"),
    ("what could go wrong with {s}", "list the risks of {s}", "what might break in {s}"),
    ("why might someone love {s}", "argue in favour of {s}", "make the case for {s}"),
    ("invent a name for {s}", "suggest a title for a book about {s}"),
    ("write a note to {w} about {s}", "draft a message telling {w} about {s}"),
    ("what does {s} sound like", "describe the smell of {s}", "how does {s} feel to touch"),
    ("continue this: the morning I found {s},", "finish the sentence: nobody expected {s} to"),
    ("plan a day around {s}", "what would a weekend with {s} look like"),
    ("write a product review of {s}", "rate {s} out of ten and say why"),
    ("what question would {w} ask about {s}", "ask three questions about {s}"),
    ("describe {s} from the point of view of {o}", "how would {o} see {s}"),
    ("give step-by-step instructions for visiting {s}", "how do you take care of {s}"),
    ("summarise the history of {s} in a made-up town called {n}", "what happened to {s} in {n}"),
)


def _subject(rng: random.Random) -> str:
    if rng.random() < 0.15:
        name = "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()
        return f"{rng.choice(['the', 'a'])} {rng.choice(_NOUN)} called {name}"
    adj, noun = rng.choice(_ADJ), rng.choice(_NOUN)
    art = "an" if adj[0] in "aeiou" else "a"
    return rng.choice([f"{art} {adj} {noun}", f"the {adj} {noun}", f"{adj} {_plural(noun)}"])


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _prompt(rng: random.Random) -> str:
    shape = rng.choice(rng.choice(_SHAPES))
    name = "".join(rng.choice(_SYL) for _ in range(3)).capitalize()
    body = shape.format(s=_subject(rng), o=_subject(rng), w=rng.choice(_WHO), n=name)
    question = body.split()[0] in ("what", "how", "why")
    opener = rng.choice(_OPEN_Q if question else _OPEN)
    if opener and opener[-2] not in ".:!":
        text = opener + body  # runs on: "Could you describe ..."
    else:
        text = opener + (body[0].upper() + body[1:] if rng.random() < 0.85 else body)
    ask = question or opener.startswith(("Could", "Would", "Can"))
    text = rng.choice(_GREET) + text + ("?" if ask else rng.choice([".", ".", ".", "!", ""]))
    closer = rng.choice(_CLOSE)
    if closer and not text.endswith(("?", ".", "!")):
        text += "."
    return text + closer


def draw_prompts(seed: int, n: int) -> list[str]:
    """`n` distinct prompts of a seed; prompt i depends on (seed, i) alone (a collision with an
    earlier one is redrawn), so a longer draw extends a shorter one."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < n:
        rng = random.Random(f"fidelity-prompt:{seed}:{i}")
        for _ in range(100):
            text = _prompt(rng)
            if text not in seen:
                break
        seen.add(text)
        out.append(text)
        i += 1
    return out


def read_prompt_file(path: str) -> list[Any]:
    """The user's own audit prompts: a text file, one prompt a line (blank lines skipped), or
    JSONL with `prompt` (a string) or `messages` (a chat) on each line. Errors name the line."""
    import orjson

    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"audit.prompts: cannot read {p}: {e}") from None
    jsonl = p.suffix in (".jsonl", ".json")
    out: list[Any] = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if len(line) > 100_000:
            raise ValueError(f"{p}:{no}: a prompt of {len(line):,} characters (at most 100,000)")
        if not jsonl:
            out.append(line.strip())
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{p}:{no}: not JSON: {e}") from None
        if isinstance(rec, dict) and isinstance(rec.get("prompt"), str):
            out.append(rec["prompt"])
        elif isinstance(rec, dict) and _chat(rec.get("messages")):
            out.append(rec["messages"])
        else:
            raise ValueError(f"{p}:{no}: needs a `prompt` string or a `messages` list")
    if not out:
        raise ValueError(f"audit.prompts: {p} holds no prompt")
    return out


def _chat(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    )
