"""The store's reads: every query a caller needs, by name, so no SQL lives outside `store/`."""

from __future__ import annotations

import socket
from typing import Any

import orjson

from bakeoff._procs import pid_alive
from bakeoff.store._dialect import Connection, Cursor, Row
from bakeoff.store._probes import ProbeResult
from bakeoff.store._records import VoteRecord
from bakeoff.store._verdicts import Verdict

LIGHT_CALL_COLUMNS = (
    "id, run_id, endpoint, suite, item_id, repeat, status, error_class, n_attempts, cached,"
    " started_at, finished_at, http_status, finish_reason, CASE WHEN tool_calls_json IS NOT NULL"
    " AND tool_calls_json != 'null' THEN 1 ELSE 0 END AS has_tool_calls, prompt_tokens,"
    " completion_tokens,"
    " usage_source, upstream, response_model, first_byte_ms, role_ms, ttft_ms, last_token_ms, e2e_ms,"
    " cached_tokens, cost_usd, cost_source, pinned_upstream"
)


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def provider_message(detail: str, raw: str | None) -> str:
    """`detail` ("HTTP 402") with the message of an OpenAI-style error body, if it has one
    (`{"error": {"message": ...}}`, `{"error": "..."}`, `{"message": ...}`), cut to 160
    characters. The body was scrubbed of known keys when it was stored."""
    msg: Any = None
    if raw and raw.lstrip().startswith("{") and len(raw) < 1_000_000:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            err = body.get("error")
            msg = err.get("message") if isinstance(err, dict) else err
            msg = msg if isinstance(msg, str) else body.get("message")
    if not isinstance(msg, str) or not msg.strip() or msg.strip() in detail:
        return detail
    text = " ".join(msg.split())
    return f"{detail}: {text[:160]}{'…' if len(text) > 160 else ''}"


def _one(cursor: Cursor) -> Row | None:
    row: Row | None = cursor.fetchone()
    return row


def _live_elsewhere_or_here(run: Row) -> bool:
    host = run["host"]
    if host is not None and host != socket.gethostname():
        return True  # its pid means nothing here
    return bool(run["pid"]) and pid_alive(run["pid"])


class Reads:
    """The read queries of `Store` (a mixin over its connection)."""

    db: Connection

    def run(self, run_id: str) -> Row | None:
        return _one(self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)))

    def find_run(self, prefix: str) -> Row | None:
        """A run by id or unique id prefix (or `last`)."""
        if prefix == "last":
            return _one(self.db.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC"))
        rows: list[Row] = self.db.execute(
            "SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at DESC", (prefix + "%",)
        ).fetchall()
        if len(rows) == 1:
            return rows[0]
        exact = [r for r in rows if r["id"] == prefix]
        return exact[0] if exact else None

    def run_ids_with_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        """Ids of the runs starting with `prefix`, newest first: what an ambiguous prefix could
        mean, for its error message."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (prefix + "%", limit),
        )
        return [r[0] for r in rows]

    def runs(self, limit: int = 50) -> list[Row]:
        return self.db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM calls c WHERE c.run_id = r.id) AS n_calls,"
            " (SELECT COUNT(*) FROM calls c WHERE c.run_id = r.id AND c.status = 'ok') AS n_ok"
            " FROM runs r ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()

    def complete_run(self, config_hash: str) -> Row | None:
        """The newest run of this config that completed."""
        return _one(
            self.db.execute(
                "SELECT * FROM runs WHERE config_hash = ? AND status = 'complete'"
                " ORDER BY created_at DESC, rowid DESC",
                (config_hash,),
            )
        )

    def unfinished_run(self, config_hash: str) -> Row | None:
        """The newest run of this config that did not complete and is not running in a live process
        (a run still `running` on another machine counts as live: `--resume ID` takes it over)."""
        for row in self.db.execute(
            "SELECT * FROM runs WHERE config_hash = ?"
            " AND status IN ('running', 'interrupted', 'failed')"
            " ORDER BY created_at DESC, rowid DESC",
            (config_hash,),
        ):
            if row["status"] == "running" and _live_elsewhere_or_here(row):
                continue
            found: Row = row
            return found
        return None

    def endpoints(self, run_id: str) -> list[Row]:
        return self.db.execute(
            "SELECT * FROM endpoints WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()

    def items(self, run_id: str, suite: str | None = None) -> list[Row]:
        if suite is None:
            return self.db.execute(
                "SELECT * FROM items WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return self.db.execute(
            "SELECT * FROM items WHERE run_id = ? AND suite = ? ORDER BY rowid", (run_id, suite)
        ).fetchall()

    def succeeded_call_ids(self, run_id: str) -> set[str]:
        return {
            r[0]
            for r in self.db.execute(
                "SELECT id FROM calls WHERE run_id = ? AND status = 'ok'", (run_id,)
            )
        }

    def calls(self, run_id: str) -> list[Row]:
        return self.db.execute(
            "SELECT * FROM calls WHERE run_id = ? ORDER BY endpoint, suite, item_id, repeat",
            (run_id,),
        ).fetchall()

    def call(self, call_id: str) -> Row | None:
        return _one(self.db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)))

    def calls_light(self, run_id: str) -> list[Row]:
        """The calls of a run without their large text columns (request, raw response, output,
        logprobs, chunk timings): what summaries need, at a fraction of the reading cost."""
        return self.db.execute(
            f"SELECT {LIGHT_CALL_COLUMNS} FROM calls WHERE run_id = ?"
            " ORDER BY endpoint, suite, item_id, repeat",
            (run_id,),
        ).fetchall()

    def item_calls(self, run_id: str, suite: str, item_id: str) -> list[Row]:
        return self.db.execute(
            "SELECT * FROM calls WHERE run_id = ? AND suite = ? AND item_id = ?"
            " ORDER BY endpoint, repeat",
            (run_id, suite, item_id),
        ).fetchall()

    def side_calls(self, run_id: str) -> list[Row]:
        """The bills of a run's probe and judge calls, in the order they were made."""
        return self.db.execute(
            "SELECT * FROM side_calls WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()

    def attempts(self, call_id: str) -> list[Row]:
        return self.db.execute(
            "SELECT * FROM attempts WHERE call_id = ? ORDER BY n", (call_id,)
        ).fetchall()

    def retried_calls(self, run_id: str) -> dict[str, tuple[float, int]]:
        """{call id: (when its last attempt started, how many of its attempts were refused with
        a rate limit)} for the calls of a run that took more than one attempt."""
        rows = self.db.execute(
            "SELECT a.call_id, MAX(a.started_at),"
            " SUM(CASE WHEN a.error_class = 'rate_limited' THEN 1 ELSE 0 END)"
            " FROM attempts a JOIN calls c ON c.id = a.call_id"
            " WHERE c.run_id = ? AND c.n_attempts > 1 GROUP BY a.call_id",
            (run_id,),
        ).fetchall()
        return {r[0]: (float(r[1]), int(r[2] or 0)) for r in rows}

    def run_fingerprint(self, run_id: str) -> str:
        """A short string that changes whenever anything a run's summary is made of changes: its
        calls, scores, items, verdicts, probes, side calls, audit stop and run row (aggregates,
        read in one query: a few ms for 10,000 calls). The key of its cached summary."""
        row = self.db.execute(
            "SELECT"
            " (SELECT COUNT(*) || ':' || COALESCE(SUM(finished_at), 0) || ':'"
            "  || COALESCE(SUM(n_attempts), 0) || ':'"
            "  || SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) || ':'"
            "  || COALESCE(SUM(LENGTH(error_class)), 0) || ':' || COALESCE(SUM(ttft_ms), 0) || ':'"
            "  || COALESCE(SUM(completion_tokens), 0) || ':' || COALESCE(SUM(cost_usd), 0)"
            "  FROM calls WHERE run_id = ?),"
            " (SELECT COUNT(*) || ':' || COALESCE(SUM(s.value), 0) || ':'"
            "  || COALESCE(SUM(s.passed), 0) || ':' || COALESCE(SUM(LENGTH(s.detail)), 0)"
            "  FROM scores s JOIN calls c ON c.id = s.call_id WHERE c.run_id = ?),"
            " (SELECT COUNT(*) FROM items WHERE run_id = ?),"
            " (SELECT COUNT(*) || ':' || COALESCE(MAX(computed_at), '') || ':'"
            "  || COALESCE(SUM(LENGTH(evidence_json)), 0) FROM verdicts WHERE run_id = ?),"
            " (SELECT COUNT(*) || ':' || COALESCE(MAX(computed_at), '') || ':'"
            "  || COALESCE(SUM(LENGTH(result_json)), 0) FROM probes WHERE owner_id = ?),"
            " (SELECT COUNT(*) || ':' || COALESCE(SUM(cost_usd), 0) FROM side_calls"
            "  WHERE run_id = ?),"
            " (SELECT status || ':' || COALESCE(finished_at, '') || ':' || LENGTH(lineup_json)"
            "  FROM runs WHERE id = ?),"
            " (SELECT COUNT(*) || ':' || COALESCE(SUM(LENGTH(stop_json)), 0) FROM audit_stops"
            "  WHERE run_id = ?)",
            (run_id,) * 8,
        ).fetchone()
        return "|".join(str(v) for v in row)

    def scores(self, run_id: str, *, light: bool = False) -> list[Row]:
        """Every score of a run, in the order written; `light`: without the detail text and the
        call's columns."""
        if light:
            return self.db.execute(
                "SELECT s.call_id, s.scorer, s.value, s.passed FROM scores s"
                " JOIN calls c ON c.id = s.call_id WHERE c.run_id = ? ORDER BY s.rowid",
                (run_id,),
            ).fetchall()
        return self.db.execute(
            "SELECT s.*, c.endpoint, c.suite, c.item_id, c.repeat FROM scores s"
            " JOIN calls c ON c.id = s.call_id WHERE c.run_id = ? ORDER BY s.rowid",
            (run_id,),
        ).fetchall()

    def perf_run(self, perf_id: str) -> Row | None:
        return _one(self.db.execute("SELECT * FROM perf_runs WHERE id = ?", (perf_id,)))

    def perf_requests(self, perf_id: str) -> list[Row]:
        return self.db.execute(
            "SELECT * FROM perf_requests WHERE perf_id = ? ORDER BY endpoint, level, seq",
            (perf_id,),
        ).fetchall()

    def probes(self, owner_id: str) -> dict[str, ProbeResult]:
        rows = self.db.execute("SELECT * FROM probes WHERE owner_id = ?", (owner_id,)).fetchall()
        return {r["endpoint"]: orjson.loads(r["result_json"]) for r in rows}

    def perf_runs(self, limit: int = 50) -> list[Row]:
        return self.db.execute(
            "SELECT id, run_id, created_at, finished_at, status, summary_json FROM perf_runs"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()

    def votes(self, run_id: str) -> list[VoteRecord]:
        rows = self.db.execute(
            "SELECT * FROM votes WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        return [
            VoteRecord(
                id=r["id"],
                suite=r["suite"],
                item_id=r["item_id"],
                repeat=r["repeat"],
                left=r["left"],
                right=r["right"],
                winner=r["winner"],
                voter=r["voter"],
                left_chars=r["left_chars"],
                right_chars=r["right_chars"],
                detail=orjson.loads(r["detail_json"]) if r["detail_json"] else None,
            )
            for r in rows
        ]

    def verdicts(self, run_id: str) -> dict[str, Verdict]:
        rows = self.db.execute("SELECT * FROM verdicts WHERE run_id = ?", (run_id,)).fetchall()
        return {
            r["endpoint"]: Verdict.model_validate(
                {"verdict": r["verdict"], "p_value": r["p_value"], **loads(r["evidence_json"])}
            )
            for r in rows
        }

    def cache_get(self, key: str) -> Any:
        row = self.db.execute(
            "SELECT result_json FROM response_cache WHERE key = ?", (key,)
        ).fetchone()
        return loads(row[0]) if row else None

    # -- pages and reports -------------------------------------------------------------------------
    def item(self, run_id: str, suite: str, item_id: str) -> Row | None:
        return _one(
            self.db.execute(
                "SELECT * FROM items WHERE run_id = ? AND suite = ? AND item_id = ?",
                (run_id, suite, item_id),
            )
        )

    def item_keys(self, run_id: str) -> list[Row]:
        """(suite, item_id) of every item of a run, in the order stored."""
        return self.db.execute(
            "SELECT suite, item_id FROM items WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()

    def call_ids(self, run_id: str) -> list[str]:
        """Every call id of a run, in the order stored."""
        rows = self.db.execute("SELECT id FROM calls WHERE run_id = ? ORDER BY rowid", (run_id,))
        return [r[0] for r in rows]

    def output_text(self, call_id: str) -> str | None:
        row = self.db.execute("SELECT output_text FROM calls WHERE id = ?", (call_id,)).fetchone()
        return row[0] if row else None

    def suite_calls(self, run_id: str, suite: str) -> list[Row]:
        """The calls of one suite: id, endpoint, item, repeat, status, error class, output."""
        return self.db.execute(
            "SELECT id, endpoint, item_id, repeat, status, error_class, output_text FROM calls"
            " WHERE run_id = ? AND suite = ?",
            (run_id, suite),
        ).fetchall()

    def suite_scores(self, run_id: str, suite: str) -> list[Row]:
        """The scores of one suite's calls, in the order written."""
        return self.db.execute(
            "SELECT s.call_id, s.scorer, s.value, s.passed, s.detail FROM scores s"
            " JOIN calls c ON c.id = s.call_id WHERE c.run_id = ? AND c.suite = ?"
            " ORDER BY s.rowid",
            (run_id, suite),
        ).fetchall()

    def call_scores(self, call_ids: list[str]) -> list[Row]:
        """Every score of these calls, in the order written."""
        if not call_ids:
            return []
        marks = ",".join("?" * len(call_ids))
        return self.db.execute(
            f"SELECT * FROM scores WHERE call_id IN ({marks}) ORDER BY rowid", call_ids
        ).fetchall()

    def suite_outcomes(self, run_id: str) -> list[Row]:
        """id, endpoint, suite, item, repeat and status of every suite call (not the audit's)."""
        return self.db.execute(
            "SELECT id, endpoint, suite, item_id, repeat, status FROM calls WHERE run_id = ?"
            " AND suite NOT LIKE 'fidelity.%'",
            (run_id,),
        ).fetchall()

    def ok_suite_outputs(self, run_id: str, *, texts: bool = True) -> list[Row]:
        """The successful suite calls (not the audit's), by endpoint: id, endpoint, suite, item,
        repeat and (with `texts`) the output."""
        return self.db.execute(
            f"SELECT id, endpoint, suite, item_id, repeat, {'output_text' if texts else 'NULL'}"
            " FROM calls WHERE run_id = ? AND status = 'ok' AND suite NOT LIKE 'fidelity.%'"
            " ORDER BY endpoint",
            (run_id,),
        ).fetchall()

    def ok_call(self, run_id: str, call_id: str) -> Row | None:
        """A successful call of this run: endpoint, suite, item, repeat, output."""
        return _one(
            self.db.execute(
                "SELECT endpoint, suite, item_id, repeat, output_text FROM calls"
                " WHERE id = ? AND run_id = ? AND status = 'ok'",
                (call_id, run_id),
            )
        )

    def perf_runs_of(self, run_id: str) -> list[Row]:
        """The perf sweeps attached to a run: id, created_at, status."""
        return self.db.execute(
            "SELECT id, created_at, status FROM perf_runs WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        ).fetchall()

    def perf_measurements(self, perf_id: str) -> list[Row]:
        """The successful measured requests of a sweep: endpoint, level, TTFT, chunk timings."""
        return self.db.execute(
            "SELECT endpoint, level, ttft_ms, chunks_json FROM perf_requests"
            " WHERE perf_id = ? AND phase = 'measure' AND status = 'ok'",
            (perf_id,),
        ).fetchall()

    # -- the audit's behaviour checks --------------------------------------------------------------
    def tool_calls(self, run_id: str, endpoints: tuple[str, ...]) -> list[Row]:
        """The first repeat of every successful `tools` suite call of these endpoints, with its
        item's input: endpoint, item_id, finish_reason, tool_calls_json, input_json."""
        marks = ",".join("?" * len(endpoints))
        return self.db.execute(
            "SELECT c.endpoint, c.item_id, c.finish_reason, c.tool_calls_json, i.input_json"
            " FROM calls c JOIN items i ON i.run_id = c.run_id AND i.suite = c.suite"
            " AND i.item_id = c.item_id WHERE c.run_id = ? AND c.suite = 'tools'"
            f" AND c.repeat = 0 AND c.status = 'ok' AND c.endpoint IN ({marks})",
            (run_id, *endpoints),
        ).fetchall()

    def failure_causes(self, run_id: str) -> dict[str, str]:
        """{endpoint: its most common failure, in the provider's words where its error body has a
        message} over the run's failed suite calls."""
        rows = self.db.execute(
            "SELECT endpoint, error_detail, response_raw FROM calls WHERE run_id = ?"
            " AND status != 'ok' AND suite NOT LIKE 'fidelity.%'",
            (run_id,),
        ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            why = provider_message(r["error_detail"] or "error", r["response_raw"])
            by = counts.setdefault(r["endpoint"], {})
            by[why] = by.get(why, 0) + 1
        return {ep: max(by, key=lambda k: by[k]) for ep, by in counts.items()}

    def score_sums(self, run_id: str, scorer: str, endpoints: tuple[str, ...]) -> dict[str, float]:
        """{endpoint: the sum of one scorer's values over its calls}."""
        marks = ",".join("?" * len(endpoints))
        rows = self.db.execute(
            "SELECT c.endpoint, SUM(s.value) FROM scores s JOIN calls c ON c.id = s.call_id"
            f" WHERE c.run_id = ? AND s.scorer = ? AND c.endpoint IN ({marks})"
            " GROUP BY c.endpoint",
            (run_id, scorer, *endpoints),
        ).fetchall()
        return {r[0]: r[1] for r in rows}
