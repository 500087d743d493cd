"""`bakeoff watch`'s tables (a mixin of `Store`): the watches, their checks (each an ordinary run),
each endpoint's detector step after each check, and the anchors' baseline answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bakeoff.store._dialect import Connection


@dataclass(frozen=True)
class WatchRow:
    name: str
    created_at: str
    origin: float
    """The watch's clock when it was made: slot k of its schedule is due at origin + k * every."""
    settings_json: str


@dataclass(frozen=True)
class WatchCheck:
    """One check of a watch: `running` until its steps are stored, then `done`; `skipped-cost`
    when a cost cap kept it from being made (no run, no step: a gap in the schedule)."""

    seq: int
    slot: int | None
    run_id: str | None
    status: str
    started_at: float
    finished_at: float | None
    owner: str | None = None
    """The watcher process making it (`host:pid:token`) while it runs."""
    lease_until: float | None = None
    """Wall-clock time (epoch seconds) until which `owner` holds it; renewed while it runs."""


@dataclass(frozen=True)
class WatchStepRecord:
    """One endpoint's detector after one check."""

    seq: int
    endpoint: str
    phase: str
    gap: bool
    alarm: bool
    n: int
    changed: int
    statistic: float | None
    threshold: float
    why: str | None
    state_json: str
    recheck_json: str | None = None
    """The targeted re-check of a crossing (`watch._recheck.Recheck`), if one was made."""


@dataclass(frozen=True)
class BaselineAnswer:
    endpoint: str
    item_id: str
    seq: int
    answer: str
    epoch: int = 0
    """The endpoint's baseline it belongs to: 0, then one more after each acknowledged change."""


class Watches:
    """Writes and reads of `watches`, `watch_checks`, `watch_steps` and `watch_answers`."""

    db: Connection

    def transaction(self) -> Any:  # provided by Store
        raise NotImplementedError

    def ensure_watch(
        self, name: str, origin: float, settings_json: str, created_at: str
    ) -> WatchRow:
        """The watch of this name; made with these settings and origin if there is none (a watch
        made before keeps its own)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO watches (name, created_at, origin, settings_json) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, created_at, origin, settings_json),
            )
        found = self.watch(name)
        assert found is not None
        return found

    def watch(self, name: str) -> WatchRow | None:
        r = self.db.execute("SELECT * FROM watches WHERE name = ?", (name,)).fetchone()
        if r is None:
            return None
        return WatchRow(r["name"], r["created_at"], float(r["origin"]), r["settings_json"])

    def watch_names(self) -> list[str]:
        return [r["name"] for r in self.db.execute("SELECT name FROM watches ORDER BY name")]

    def watch_checks(self, name: str) -> list[WatchCheck]:
        rows = self.db.execute(
            "SELECT * FROM watch_checks WHERE watch = ? ORDER BY seq", (name,)
        ).fetchall()
        return [
            WatchCheck(
                r["seq"],
                r["slot"],
                r["run_id"],
                r["status"],
                r["started_at"],
                r["finished_at"],
                r["owner"],
                r["lease_until"],
            )
            for r in rows
        ]

    def claim_check(
        self,
        name: str,
        seq: int,
        slot: int | None,
        started_at: float,
        owner: str | None = None,
        lease_until: float | None = None,
        status: str = "running",
    ) -> bool:
        """Begin check `seq`, held by `owner` until `lease_until`; False if another watcher began
        it first (the primary key decides: one row per check, whatever the backend). `status`:
        `skipped-cost` stores a check a cost cap kept from being made (nothing runs)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO watch_checks (watch, seq, slot, status, started_at, owner, lease_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (watch, seq) DO NOTHING",
                (name, seq, slot, status, started_at, owner, lease_until),
            )
            return bool(cur.rowcount)

    def begin_check(self, name: str, seq: int, slot: int | None, started_at: float) -> None:
        if not self.claim_check(name, seq, slot, started_at):
            raise ValueError(f"watch {name!r}: check {seq} was begun already")

    def take_over_check(
        self, name: str, seq: int, owner: str, lease_until: float, prior: str | None
    ) -> bool:
        """Hold a running check whose holder was `prior` (it finished no more than that: its lease
        ran out, or its process is gone); False if another watcher changed it first."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE watch_checks SET owner = ?, lease_until = ? WHERE watch = ? AND seq = ?"
                " AND status = 'running' AND COALESCE(owner, '') = ?",
                (owner, lease_until, name, seq, prior or ""),
            )
            return bool(cur.rowcount)

    def renew_lease(self, name: str, seq: int, owner: str, lease_until: float) -> bool:
        """Extend `owner`'s hold on a running check; False if it holds it no longer."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE watch_checks SET lease_until = ? WHERE watch = ? AND seq = ?"
                " AND status = 'running' AND owner = ?",
                (lease_until, name, seq, owner),
            )
            return bool(cur.rowcount)

    def set_check_run(self, name: str, seq: int, run_id: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE watch_checks SET run_id = ? WHERE watch = ? AND seq = ?",
                (run_id, name, seq),
            )

    def finish_check(
        self,
        name: str,
        seq: int,
        finished_at: float,
        steps: Sequence[WatchStepRecord],
        answers: Sequence[BaselineAnswer],
        owner: str | None = None,
    ) -> bool:
        """The check's steps and new baseline answers, and the check marked done: one transaction,
        so a check is either done with all its steps or still running (and made again). With an
        `owner`, only while it still holds the check: False (nothing written) if another watcher
        took it over or finished it."""
        with self.transaction() as db:
            done = (
                "UPDATE watch_checks SET status = 'done', finished_at = ? WHERE watch = ? AND seq = ?"
                " AND status = 'running'"
            )
            if owner is None:
                cur = db.execute(done, (finished_at, name, seq))
            else:
                cur = db.execute(done + " AND owner = ?", (finished_at, name, seq, owner))
            if not cur.rowcount:
                return False
            for s in steps:
                db.execute(
                    "INSERT INTO watch_steps (watch, seq, endpoint, phase, gap, alarm, n, changed,"
                    " statistic, threshold, why, state_json, recheck_json)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        seq,
                        s.endpoint,
                        s.phase,
                        int(s.gap),
                        int(s.alarm),
                        s.n,
                        s.changed,
                        s.statistic,
                        s.threshold,
                        s.why,
                        s.state_json,
                        s.recheck_json,
                    ),
                )
            for a in answers:
                db.execute(
                    "INSERT INTO watch_answers (watch, endpoint, epoch, item_id, seq, answer)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (watch, endpoint, epoch, item_id) DO NOTHING",
                    (name, a.endpoint, a.epoch, a.item_id, a.seq, a.answer),
                )
        return True

    def watch_steps(self, name: str) -> list[WatchStepRecord]:
        """Every step of the watch, by check then endpoint."""
        rows = self.db.execute(
            "SELECT * FROM watch_steps WHERE watch = ? ORDER BY seq, endpoint", (name,)
        ).fetchall()
        return [_step(r) for r in rows]

    def baseline_answers(self, name: str) -> list[BaselineAnswer]:
        rows = self.db.execute(
            "SELECT endpoint, item_id, seq, answer, epoch FROM watch_answers WHERE watch = ?"
            " ORDER BY endpoint, epoch, item_id",
            (name,),
        ).fetchall()
        return [
            BaselineAnswer(r["endpoint"], r["item_id"], r["seq"], r["answer"], r["epoch"])
            for r in rows
        ]

    def ack_watch(self, name: str, endpoint: str, after_seq: int, acked_at: str) -> bool:
        """A change of `endpoint` acknowledged after check `after_seq`: its next checks form a new
        baseline. False if that was acknowledged already."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO watch_acks (watch, endpoint, after_seq, acked_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (watch, endpoint, after_seq) DO NOTHING",
                (name, endpoint, after_seq, acked_at),
            )
            return bool(cur.rowcount)

    def watch_acks(self, name: str) -> list[tuple[str, int]]:
        """(endpoint, the last check before its new baseline) of every acknowledged change."""
        rows = self.db.execute(
            "SELECT endpoint, after_seq FROM watch_acks WHERE watch = ? ORDER BY after_seq",
            (name,),
        ).fetchall()
        return [(r["endpoint"], r["after_seq"]) for r in rows]


def _step(r: Any) -> WatchStepRecord:
    return WatchStepRecord(
        seq=r["seq"],
        endpoint=r["endpoint"],
        phase=r["phase"],
        gap=bool(r["gap"]),
        alarm=bool(r["alarm"]),
        n=r["n"],
        changed=r["changed"],
        statistic=r["statistic"],
        threshold=r["threshold"],
        why=r["why"],
        state_json=r["state_json"],
        recheck_json=r["recheck_json"],
    )
