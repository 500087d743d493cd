"""The fake provider: a real OpenAI-compatible server on loopback with scripted outputs and faults."""

from bakeoff.fake._personas import PERSONAS, Upstream
from bakeoff.fake._server import FAULTS, HOSTILE, FakeConfig, FakeServer, load_script, serve_forever

__all__ = [
    "FAULTS",
    "HOSTILE",
    "PERSONAS",
    "FakeConfig",
    "FakeServer",
    "Upstream",
    "load_script",
    "serve_forever",
]
