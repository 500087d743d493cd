"""Suites: seeded item generators and the scorers that judge each answer."""

from bakeoff.suites._scorers import ExactMatch, NumericMatch, extract_number, normalize_text
from bakeoff.suites._types import Item, Judge, Reply, Score, Scorer, Suite, as_suite
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
    "Judge",
    "NumericMatch",
    "Reply",
    "Score",
    "Scorer",
    "Suite",
    "as_suite",
    "extract_number",
    "normalize_text",
]
