"""`bakeoff watch`: the same endpoints checked on a schedule, each check an ordinary stored run, and a
change detector with a stated false-alarm rate against each endpoint's own baseline (docs/WATCH.md)."""

from bakeoff.watch._alert import AlertOutcome, AlertTarget, alert, new_alarms, payload, send, where
from bakeoff.watch._check import (
    CheckResult,
    EndpointStep,
    Watch,
    WatchSettings,
    acknowledge,
    anchor_ids,
    check_lineup,
    make_check,
)
from bakeoff.watch._cost import CostCaps, CostStop, Projection, actual, cost_lines, project
from bakeoff.watch._detector import (
    GRID,
    DetectorSettings,
    DetectorState,
    Step,
    honest_rate_bound,
    log_e_value,
    update,
)
from bakeoff.watch._recheck import Recheck, recheck_lineup
from bakeoff.watch._replay import ReplayStep, Scenario, Source, replay
from bakeoff.watch._runs import CheckInterrupted
from bakeoff.watch._schedule import EndpointStatus, due, status, watch_every
from bakeoff.watch._step import Held, Stepped, step_endpoint

__all__ = [
    "GRID",
    "AlertOutcome",
    "AlertTarget",
    "CheckInterrupted",
    "CheckResult",
    "CostCaps",
    "CostStop",
    "DetectorSettings",
    "DetectorState",
    "EndpointStatus",
    "EndpointStep",
    "Held",
    "Projection",
    "Recheck",
    "ReplayStep",
    "Scenario",
    "Source",
    "Step",
    "Stepped",
    "Watch",
    "WatchSettings",
    "acknowledge",
    "actual",
    "alert",
    "anchor_ids",
    "check_lineup",
    "cost_lines",
    "due",
    "honest_rate_bound",
    "log_e_value",
    "make_check",
    "new_alarms",
    "payload",
    "project",
    "recheck_lineup",
    "replay",
    "send",
    "status",
    "step_endpoint",
    "update",
    "watch_every",
    "where",
]
