"""A run's audit analyses and its reference scorer's stored answers (a mixin of `Store`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from bakeoff.store._dialect import Connection
from bakeoff.store._reads import loads
from bakeoff.store._records import dumps


class AuditStop(BaseModel):
    """The audit stopped at its cost cap: the round that would have crossed it was not started."""

    model_config = ConfigDict(extra="forbid")

    cap_usd: float
    spent_usd: float
    """What the run's priced audit calls had cost when it stopped."""
    next_round_usd: float
    """The projected cost of the round not started (each endpoint's cost per call so far)."""
    rounds: int
    """Rounds made before it stopped."""
    unpriced: int = 0
    """Audit calls with no price (none known, none reported): not counted against the cap."""

    def text(self) -> str:
        """The stop in words, as every surface prints it."""
        line = (
            f"the audit stopped at its cost cap after {self.rounds} round"
            f"{'s' if self.rounds != 1 else ''}: ${self.spent_usd:.4g} spent of the "
            f"${self.cap_usd:.4g} cap, the next round ~${self.next_round_usd:.4g}; verdicts from "
            "the calls made (inconclusive where too few)"
        )
        if self.unpriced:
            line += f"; {self.unpriced} unpriced calls not counted"
        return line


class Analyses:
    """Writes and reads of `analyses` and `scorer_answers`."""

    db: Connection

    def transaction(self) -> Any:  # provided by Store
        raise NotImplementedError

    def put_analysis(
        self,
        run_id: str,
        analysis_id: str,
        settings: Mapping[str, object],
        scorers: Mapping[str, object],
        verdicts: dict[str, Any] | None,
        created_at: str,
    ) -> None:
        """Store an analysis (settings, scorer identities, verdicts); the same id is replaced —
        the id is a hash of the settings, so only the same analysis can take its place."""
        from bakeoff.store._db import upsert

        cols = ("run_id", "id", "created_at", "settings_json", "scorers_json", "verdicts_json")
        with self.transaction() as db:
            db.execute(
                upsert("analyses", cols, ("run_id", "id")),
                (
                    run_id,
                    analysis_id,
                    created_at,
                    dumps(settings),
                    dumps(scorers),
                    None if verdicts is None else dumps(verdicts),
                ),
            )

    def analysis(self, run_id: str, analysis_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM analyses WHERE run_id = ? AND id = ?", (run_id, analysis_id)
        ).fetchone()
        return None if row is None else _analysis(row)

    def analyses(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM analyses WHERE run_id = ? ORDER BY created_at, id", (run_id,)
        ).fetchall()
        return [_analysis(r) for r in rows]

    def put_scorer_answers(self, run_id: str, scorer: str, answers: Mapping[str, object]) -> None:
        """Keep a scorer's answers (key → answer); a key stored before keeps its first answer."""
        if not answers:
            return
        sql = (
            "INSERT INTO scorer_answers (run_id, scorer, key, answer_json) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, scorer, key) DO NOTHING"
        )
        with self.transaction() as db:
            for key, answer in answers.items():
                db.execute(sql, (run_id, scorer, key, dumps(answer)))

    def scorer_answers(self, run_id: str, scorer: str) -> dict[str, object]:
        """{key: the scorer's answer, as its JSON was stored}."""
        rows = self.db.execute(
            "SELECT key, answer_json FROM scorer_answers WHERE run_id = ? AND scorer = ?",
            (run_id, scorer),
        ).fetchall()
        return {r["key"]: loads(r["answer_json"]) for r in rows}

    def put_audit_stop(self, run_id: str, stop: AuditStop) -> None:
        """Record that the run's audit stopped at its cost cap (replacing an earlier record)."""
        from bakeoff.store._db import upsert

        with self.transaction() as db:
            db.execute(
                upsert("audit_stops", ("run_id", "stop_json"), ("run_id",)),
                (run_id, stop.model_dump_json()),
            )

    def audit_stop(self, run_id: str) -> AuditStop | None:
        """Why the run's audit stopped early, if its cost cap stopped it."""
        row = self.db.execute(
            "SELECT stop_json FROM audit_stops WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else AuditStop.model_validate_json(row["stop_json"])

    def scorer_roles(self, run_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT scorer FROM scorer_answers WHERE run_id = ? ORDER BY scorer", (run_id,)
        ).fetchall()
        return [r["scorer"] for r in rows]


def _analysis(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "settings": loads(row["settings_json"]),
        "scorers": loads(row["scorers_json"]),
        "verdicts": loads(row["verdicts_json"]),
    }
