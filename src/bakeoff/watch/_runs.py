"""The runs a watch makes — a check's, a re-check's — and the greedy answers read back from them.
Each is an ordinary stored run through the pipeline; a complete run of the same lineup (made
before a crash) is taken as it is, an incomplete one is resumed by the pipeline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import closing

from bakeoff._pipeline import Hooks, RunRequest, RunStopped, drive
from bakeoff.lineups import Lineup, purposes
from bakeoff.plugins import resolve_lineup
from bakeoff.runs import config_hash
from bakeoff.store import Store

GREEDY = purposes.fidelity_suite("greedy")

Log = Callable[[str], None]


class CheckInterrupted(Exception):
    """The check's run was interrupted (SIGTERM, Ctrl-C): it is made again on the next start."""


def run_lineup(db: str, lineup: Lineup, log: Log | None) -> tuple[str | None, str | None]:
    """The run's id (None and the cause when it could not be made: a gap for every endpoint). A
    complete run of the same lineup (made before a crash) is taken as it is."""
    with closing(Store(db)) as store:
        prior = store.complete_run(config_hash(resolve_lineup(lineup)))
    if prior is not None:
        return prior["id"], None
    request = RunRequest(db=db, report=False, check=False, use_cache=False)
    try:
        outcome = drive(lineup, request, Hooks(log=log))
    except RunStopped as e:
        return e.run_id, str(e)
    if outcome.status != "complete":
        raise CheckInterrupted(f"check interrupted: run {outcome.summary.run_id} {outcome.status}")
    return outcome.summary.run_id, None


def answers(store: Store, run_id: str | None) -> dict[str, tuple[dict[str, str], Counter[str]]]:
    """Per endpoint: {item id: greedy answer} of its successful calls, and its errors' causes."""
    out: dict[str, tuple[dict[str, str], Counter[str]]] = {}
    if run_id is None:
        return out
    for c in store.calls(run_id):
        if c["suite"] != GREEDY:
            continue
        ok, errors = out.setdefault(c["endpoint"], ({}, Counter()))
        if c["status"] == "ok":
            ok[c["item_id"]] = c["output_text"] or ""
        else:
            errors[c["error_class"] or "error"] += 1
    return out
