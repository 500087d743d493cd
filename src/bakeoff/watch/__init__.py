"""`bakeoff watch`: the same endpoints checked on a schedule, each check an ordinary stored run, and a
change detector with a stated false-alarm rate against each endpoint's own baseline (docs/WATCH.md)."""

from bakeoff.watch._check import (
    CheckInterrupted,
    CheckResult,
    EndpointStep,
    Watch,
    WatchSettings,
    acknowledge,
    anchor_ids,
    check_lineup,
    make_check,
)
from bakeoff.watch._detector import (
    GRID,
    DetectorSettings,
    DetectorState,
    Step,
    honest_rate_bound,
    log_e_value,
    update,
)
from bakeoff.watch._schedule import EndpointStatus, due, status, watch_every

__all__ = [
    "GRID",
    "CheckInterrupted",
    "CheckResult",
    "DetectorSettings",
    "DetectorState",
    "EndpointStatus",
    "EndpointStep",
    "Step",
    "Watch",
    "WatchSettings",
    "acknowledge",
    "anchor_ids",
    "check_lineup",
    "due",
    "honest_rate_bound",
    "log_e_value",
    "make_check",
    "status",
    "update",
    "watch_every",
]
