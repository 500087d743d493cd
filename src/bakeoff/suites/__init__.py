"""Suites: seeded item generators and the scorers that judge each answer."""

from bakeoff.suites._scorers import ExactMatch, NumericMatch, extract_number, normalize_text
from bakeoff.suites._types import Item, Reply, Score, Scorer, Suite
from bakeoff.suites.arith import Arith

__all__ = [
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
