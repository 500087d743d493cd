"""Built-in scorers: exact match and numeric match."""

from __future__ import annotations

import math
import re
import unicodedata

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Score

_NUM = re.compile(r"[-−]?\$?\d[\d,]*(?:\.\d+)?|[-−]?\.\d+")


def normalize_text(s: str) -> str:
    """NFKC, collapsed whitespace, stripped, casefolded, trailing punctuation removed."""
    s = unicodedata.normalize("NFKC", s)
    s = " ".join(s.split()).casefold()
    return s.strip().rstrip(".!").strip()


_MARKERS = re.compile(
    r"(?:answer\s*+(?:is|:)|answer is:|####|\bresult\s*+(?:is|:)|respuesta es|réponse est|"
    r"antwort ist|resposta é|jibu ni|=)\s*+:?\s*+\**+\s*+([-−]?\$?\d[\d,]*+(?:\.\d+)?)",
    re.I,
)
r"""Linear in the reply: each run of spaces, stars and digits is taken whole (`*+`, never given back
to be split between the neighbouring `\s*`: `"=" + 3000 spaces` took minutes, cubic), and every
character that can start a marker ends its attempt in time bounded by the run that follows it."""


def extract_number(text: str) -> float | None:
    """The answer number in a reply: the one after the last "answer is" / "answer:" / "####" (and
    their equivalents in the multilingual suite's languages), else after the last "=", else the last
    number. Accepts "42", "42.0", "$42", "= 42", "**42**", "The answer is 42.", "1,234".
    """
    t = unicodedata.normalize("NFKC", text).replace("**", "")
    found = None
    strong = [m for m in _MARKERS.finditer(t) if not m.group(0).lstrip().startswith("=")]
    if strong:
        found = strong[-1].group(1)
        # "The answer is 2 + 3 = 5": the result of the expression, not its first operand
        clause = re.split(r"[\n,;]|\.\s", t[strong[-1].start(1) :], maxsplit=1)[0]
        if "=" in clause:
            after = _NUM.findall(clause.rsplit("=", 1)[1])
            if after:
                found = after[0]
    else:
        eq = list(_MARKERS.finditer(t))
        found = eq[-1].group(1) if eq else None
    if found is None:
        nums = _NUM.findall(t)
        if not nums:
            return None
        found = nums[-1]
    tok = found.replace(",", "").replace("$", "").replace("−", "-")
    try:
        return float(tok)
    except ValueError:
        return None


EXACT_RULE = "ignoring case, runs of whitespace, Unicode compatibility forms and a trailing . or !"
"""What `exact` forgives (`normalize_text`), said wherever the scorer is described."""
STRICT_RULE = "byte for byte after stripping surrounding whitespace"
"""What `exact` with `strict: true` compares."""


class ExactMatch:
    """1 if the normalised reply equals the normalised target (`EXACT_RULE`); with `strict`, if
    they are equal byte for byte once surrounding whitespace is stripped (`STRICT_RULE`)."""

    name = "exact"

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    @property
    def rule(self) -> str:
        return STRICT_RULE if self.strict else EXACT_RULE

    def __call__(self, item: Item, result: CallResult) -> Score:
        norm = str.strip if self.strict else normalize_text
        got, want = norm(result.text), norm(str(item.target))
        ok = got == want
        detail = f"got {got!r}; compared {self.rule}"
        return Score(scorer=self.name, value=float(ok), passed=ok, detail=detail)


class NumericMatch:
    """1 if the number extracted from the reply equals the target (relative tolerance 1e-6)."""

    name = "numeric"

    def __call__(self, item: Item, result: CallResult) -> Score:
        got = extract_number(result.text)
        want = float(item.target)
        ok = got is not None and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
        return Score(scorer=self.name, value=float(ok), passed=ok, detail=f"extracted {got!r}")
