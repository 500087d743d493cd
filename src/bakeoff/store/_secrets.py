"""What bakeoff does with the API keys it holds, before writing text it did not write itself.

Keys stay out of what bakeoff writes by construction: the lineup holds variable names, never keys
(`lineups._keys`); the stored request's credential headers are `***` (`endpoints.redact_headers`).
What is left is text an endpoint sends back — an error body that echoes the `Authorization`
header (`unauthorized: got Bearer sk-...`), a reply from a server that repeats it — and text a user
pasted (a dataset record holding the key). For those, two rules, and never more:

- A key of at least `MIN_REDACTABLE` characters is replaced by `***` wherever it occurs: a string
  that long equal to the key is the key, not a coincidence, so nothing else is changed.
- A shorter key (vLLM's dummy `EMPTY`, `none`, `x`) is never searched for in data: replacing it
  would rewrite model outputs and names (`Nothing is EMPTY here`, `max_tokens`). An error text
  that holds it is dropped whole (`WITHHELD`), not rewritten; model outputs are kept as they are.

The stored lineup is never passed through either rule: it holds no key by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_REDACTABLE = 16
"""Shortest key replaced where it occurs: every hosted provider's key is longer (OpenAI 51+,
OpenRouter 73, Groq 56, Hugging Face 37, Fireworks 48); vLLM's own example `token-abc123` is not."""

WITHHELD = "(withheld: this text contains the API key, too short to redact safely)"
"""What an error text that holds a short key is stored and shown as."""


class Secrets:
    """The keys one process holds, split by the rule that applies to them."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.long: list[str] = []
        """Replaced by `***`, longest first (a key that contains another is replaced whole)."""
        self.short: list[str] = []
        """Never replaced; an error text that holds one is withheld."""
        self.add(keys)

    def add(self, keys: Iterable[str]) -> None:
        new = {k for k in keys if k and k.strip()}
        longs = {*self.long, *(k for k in new if len(k) >= MIN_REDACTABLE)}
        shorts = {*self.short, *(k for k in new if len(k) < MIN_REDACTABLE)}
        self.long = sorted(longs, key=len, reverse=True)
        self.short = sorted(shorts, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.long or self.short)

    def data(self, text: str) -> str:
        """Text that may be data (a reply, a dataset record): long keys replaced, nothing else."""
        for k in self.long:
            if k in text:
                text = text.replace(k, "***")
        return text

    def message(self, text: str) -> str:
        """An error message about to be printed (never stored): long keys replaced, and a short key
        too where it stands as a word of its own (`got Bearer EMPTY`), so it is never echoed; a
        short key inside a word (`x` in `fix`) is left."""
        text = self.data(text)
        for k in self.short:
            text = re.sub(rf"(?<![A-Za-z0-9_\-]){re.escape(k)}(?![A-Za-z0-9_\-])", "***", text)
        return text

    def error(self, text: str) -> str:
        """An error body, an exception's message, a log line: long keys replaced; the whole text
        `WITHHELD` if it holds a short key."""
        if any(k in text for k in self.short):
            return WITHHELD
        return self.data(text)


HELD = Secrets()
"""Every key this process has read from the environment (`runs.api_keys` adds them): what the
command line's messages are cleaned of before they are printed (`Secrets.data`: the long ones)."""
