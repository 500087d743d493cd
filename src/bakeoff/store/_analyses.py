"""A run's audit analyses and its reference scorer's stored answers (a mixin of `Store`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bakeoff.store._dialect import Connection
from bakeoff.store._reads import loads
from bakeoff.store._records import dumps


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
