"""Performance: the load generator, latency/throughput metrics, capability probes."""

from bakeoff.perf._load import LevelSpec, Target, run_level, schedule
from bakeoff.perf._metrics import SLO, dist, level_metrics
from bakeoff.perf._perf import PerfOptions, run_perf, synthetic_requests
from bakeoff.perf._probe import ProbeOptions, probe_endpoint, run_probes
from bakeoff.perf._ray import RayError
from bakeoff.perf._types import EndpointSweep, LevelEntry, PerfRecord, PerfSummary
from bakeoff.runs import capability_row

__all__ = [
    "SLO",
    "EndpointSweep",
    "LevelEntry",
    "LevelSpec",
    "PerfOptions",
    "PerfRecord",
    "PerfSummary",
    "ProbeOptions",
    "RayError",
    "Target",
    "capability_row",
    "dist",
    "level_metrics",
    "probe_endpoint",
    "run_level",
    "run_perf",
    "run_probes",
    "schedule",
    "synthetic_requests",
]
