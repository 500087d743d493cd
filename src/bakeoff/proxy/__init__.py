"""The distortion proxy: known faults in front of any endpoint, to calibrate the audit against."""

from bakeoff.proxy._server import DistortionProxy, truncate_messages
from bakeoff.proxy._tokens import GGUFTokenizer, Tokenizer, WordTokenizer

__all__ = ["DistortionProxy", "GGUFTokenizer", "Tokenizer", "WordTokenizer", "truncate_messages"]
