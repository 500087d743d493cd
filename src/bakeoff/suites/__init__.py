"""Suites: seeded item generators and the scorers that judge each answer."""

from bakeoff.suites._scorers import ExactMatch, NumericMatch, extract_number, normalize_text
from bakeoff.suites._types import Item, Reply, Score, Scorer, Suite
from bakeoff.suites.arith import Arith

EVAL_SUITES = (
    "math",
    "instructions",
    "tools",
    "code",
    "long-context",
    "long-output",
    "structured",
    "multilingual",
)
"""The built-in evaluation suites beyond `arith` (the fidelity audit's prompts are not among them)."""

__all__ = [
    "EVAL_SUITES",
    "Arith",
    "ExactMatch",
    "Item",
    "NumericMatch",
    "Reply",
    "Score",
    "Scorer",
    "Suite",
    "extract_number",
    "normalize_text",
]
