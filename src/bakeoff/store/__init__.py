"""The store: SQLite (WAL) or PostgreSQL, with versioned migrations, holding runs, endpoints, items,
calls and scores."""

from bakeoff.store._analyses import AuditStop
from bakeoff.store._db import Store, StoreError, database_exists, default_db_path
from bakeoff.store._dialect import Row, redact
from bakeoff.store._migrations import MIGRATIONS, migrate
from bakeoff.store._probes import (
    ContextPoint,
    ContextProbe,
    Feature,
    FeatureProbe,
    Needle,
    OutputProbe,
    ProbeResult,
    Truncation,
)
from bakeoff.store._reads import loads, provider_message
from bakeoff.store._records import (
    Attempt,
    CallRecord,
    JudgeDetail,
    PerfRecord,
    ScoreRow,
    SideCallRecord,
    VoteRecord,
    dumps,
)
from bakeoff.store._secrets import HELD, MIN_REDACTABLE, WITHHELD, Secrets
from bakeoff.store._verdicts import (
    AssumedReference,
    Behaviour,
    Example,
    MarginSource,
    PowerAt,
    RouteShare,
    Style,
    Styles,
    SuiteChecks,
    TestEvidence,
    Verdict,
    margin_source_text,
)
from bakeoff.store._watches import BaselineAnswer, WatchCheck, WatchRow, WatchStepRecord

__all__ = [
    "HELD",
    "MIGRATIONS",
    "MIN_REDACTABLE",
    "WITHHELD",
    "AssumedReference",
    "Attempt",
    "AuditStop",
    "BaselineAnswer",
    "Behaviour",
    "CallRecord",
    "ContextPoint",
    "ContextProbe",
    "Example",
    "Feature",
    "FeatureProbe",
    "JudgeDetail",
    "MarginSource",
    "Needle",
    "OutputProbe",
    "PerfRecord",
    "PowerAt",
    "ProbeResult",
    "RouteShare",
    "Row",
    "ScoreRow",
    "Secrets",
    "SideCallRecord",
    "Store",
    "StoreError",
    "Style",
    "Styles",
    "SuiteChecks",
    "TestEvidence",
    "Truncation",
    "Verdict",
    "VoteRecord",
    "WatchCheck",
    "WatchRow",
    "WatchStepRecord",
    "database_exists",
    "default_db_path",
    "dumps",
    "loads",
    "margin_source_text",
    "migrate",
    "provider_message",
    "redact",
]
