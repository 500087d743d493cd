"""Performance: the load generator, latency/throughput metrics, capability probes."""

from bakeoff.perf._load import LevelSpec, Target, run_level, schedule
from bakeoff.perf._metrics import SLO, dist, level_metrics
from bakeoff.perf._perf import PerfOptions, run_perf, synthetic_requests
from bakeoff.perf._probe import ProbeOptions, capability_row, probe_endpoint, run_probes

__all__ = [
    "SLO",
    "LevelSpec",
    "PerfOptions",
    "ProbeOptions",
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
