"""`bakeoff watch`: the same endpoints checked on a schedule, each check an ordinary stored run, and a
change detector with a stated false-alarm rate against each endpoint's own baseline (docs/WATCH.md)."""

from bakeoff.watch._detector import (
    GRID,
    DetectorSettings,
    DetectorState,
    Step,
    honest_rate_bound,
    log_e_value,
    update,
)

__all__ = [
    "GRID",
    "DetectorSettings",
    "DetectorState",
    "Step",
    "honest_rate_bound",
    "log_e_value",
    "update",
]
