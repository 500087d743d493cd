"""The targeted re-check of a crossing: when a check's count takes an endpoint's detector over its
threshold, the anchors that changed are asked again of that endpoint, at once, in a run of their
own; an anchor counts as changed only if it changed again, and the alarm stands only if the
detector still crosses with that count.

What it does to the promise: the confirmed count is never above the check's own (an anchor
counts only if it changed twice), the e-values rise with the count and the Shiryaev–Roberts
recursion rises with them, so the confirmed statistic is never above the unconfirmed one on the
same answers: every alarm the re-check lets through, the detector without it raised too, and the
average run length to a false alarm stays at least `arl` (docs/WATCH.md). It removes the alarms of
a change that does not last from the check to the re-check (a brief misroute, a glitch); it
cannot remove one where an honest engine's answer flips and stays flipped for a while.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

from bakeoff.lineups import Lineup
from bakeoff.store import Store
from bakeoff.watch._runs import GREEDY, Log, answers, run_lineup
from bakeoff.watch._step import AskAgain, Stepped


@dataclass(frozen=True)
class Recheck:
    """The targeted re-check of a crossing: the anchors that changed at the check, asked again of
    the same endpoint in a run of their own; the change holds for those that changed again."""

    run_id: str | None
    asked: int
    """Anchors re-asked (those that changed at the check)."""
    answered: int
    held: int
    """Of those answered, the ones whose answer differs from the baseline's again."""
    confirmed: bool
    """Whether the detector still crosses its threshold counting only the changes that held."""
    raw_statistic: float
    """The statistic the check's own count gave, before the re-check."""

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "asked": self.asked,
            "answered": self.answered,
            "held": self.held,
            "confirmed": self.confirmed,
            "raw_statistic": self.raw_statistic,
        }


def recheck_lineup(check: Lineup, endpoint: str, items: list[str]) -> Lineup:
    """The check's lineup cut to the endpoint (and the endpoints its proxy sends to) and to the
    anchors that changed."""
    ep = check.endpoint(endpoint)
    keep = {endpoint} | {n for _, n in (ep.proxy.named_endpoints() if ep.proxy else [])}
    data = check.model_dump(mode="json")
    data["endpoints"] = [e for e in data["endpoints"] if e["name"] in keep]
    options = data["run"]["suite_options"][GREEDY]
    options["only"] = sorted(items)
    return Lineup.model_validate(data)


def ask_again(db: str, check: Lineup, endpoint: str, log: Log | None) -> AskAgain:
    """The re-check of `endpoint` at a crossing: the anchors that changed asked again in a run of
    their own (its id is what the step keeps)."""

    def ask(changed: dict[str, str]) -> tuple[dict[str, str], object]:
        run_id, _failed = run_lineup(db, recheck_lineup(check, endpoint, list(changed)), log)
        with closing(Store(db)) as store:
            ok, _ = answers(store, run_id).get(endpoint, ({}, None))
        return ok, run_id

    return ask


def recheck_of(s: Stepped) -> Recheck | None:
    """What the step keeps of its re-check (None: there was none)."""
    if s.recheck is None or s.raw is None:
        return None
    raw = s.raw.statistic if s.raw.statistic is not None else float("nan")
    run_id = s.recheck_ref if isinstance(s.recheck_ref, str) else None
    h = s.recheck
    return Recheck(run_id, h.asked, h.answered, h.held, s.step.alarm, raw)
