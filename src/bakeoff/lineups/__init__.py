"""Lineups: the YAML config naming the endpoints to compare, loaded into typed models."""

from bakeoff.lineups import _keys as keys
from bakeoff.lineups import _purposes as purposes
from bakeoff.lineups._audit import AuditSettings
from bakeoff.lineups._config import (
    Claims,
    DatasetSpec,
    Endpoint,
    Lineup,
    Price,
    RateLimit,
    Routing,
    RunSettings,
    Sampling,
    StopWhen,
)
from bakeoff.lineups._loader import (
    FieldProblems,
    LineupError,
    load_lineup,
    missing_env,
    parse_lineup,
)
from bakeoff.lineups._specs import FakeSpec, LocalSpec, ProxySpec

__all__ = [
    "AuditSettings",
    "Claims",
    "DatasetSpec",
    "Endpoint",
    "FakeSpec",
    "FieldProblems",
    "Lineup",
    "LineupError",
    "LocalSpec",
    "Price",
    "ProxySpec",
    "RateLimit",
    "Routing",
    "RunSettings",
    "Sampling",
    "StopWhen",
    "keys",
    "load_lineup",
    "missing_env",
    "parse_lineup",
    "purposes",
]
