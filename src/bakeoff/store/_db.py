"""The store (SQLite, or PostgreSQL for a team): every call is evidence, committed before it is
summarised."""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bakeoff.store._analyses import Analyses
from bakeoff.store._dialect import SQLITE, Connection, dialect_for, redact, url_secrets
from bakeoff.store._migrations import migrate
from bakeoff.store._probes import ProbeResult
from bakeoff.store._reads import Reads
from bakeoff.store._records import (
    PERF_COLUMNS,
    Attempt,
    CallRecord,
    PerfRecord,
    ScoreRow,
    SideCallRecord,
    VoteRecord,
    dumps,
)
from bakeoff.store._secrets import Secrets
from bakeoff.store._verdicts import Verdict
from bakeoff.store._watches import Watches

DEFAULT_DB = "bakeoff.db"


def default_db_path() -> str:
    return os.environ.get("BAKEOFF_DB") or DEFAULT_DB


def database_exists(target: str | os.PathLike[str]) -> bool:
    """Whether a read-only command has a database to read (a server database: connecting tells)."""
    return dialect_for(str(target)).exists(str(target))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=32)
def upsert(table: str, cols: tuple[str, ...], key: tuple[str, ...]) -> str:
    """INSERT of a row that replaces the one with the same key (SQLite and PostgreSQL alike)."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    )


def _insert_call(
    db: Connection, call_id: str, cols: tuple[str, ...], values: tuple[Any, ...], *, ok: bool
) -> bool:
    """Insert a call unless a success with its id is stored (then: False, nothing written). A
    success arriving while another process's error with that id commits is tried once more: that
    error, now visible, is replaced."""
    sql = (
        f"INSERT INTO calls ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        " ON CONFLICT (id) DO NOTHING"
    )
    for _ in range(2 if ok else 1):
        db.execute("DELETE FROM calls WHERE id = ? AND status != 'ok'", (call_id,))
        if db.execute(sql, values).rowcount:
            return True
    return False


class StoreError(Exception):
    """The database cannot be opened or written; the message says what to do."""


class Store(Reads, Analyses, Watches):
    """A bakeoff database: a SQLite file (WAL, so readers never block the writer) or a PostgreSQL
    database (`postgresql://...`, where several processes and machines write at once). One
    connection per process; the dialect (`_dialect.py`) is the only part that tells them apart."""

    def __init__(self, path: str | os.PathLike[str], *, secrets: Iterable[str] = ()) -> None:
        self.target = str(path)  # as given: a file, or a postgresql:// URL (reopen with this)
        self.path = redact(self.target)  # as shown: a URL's password is ***
        self.dialect = dialect_for(self.target)
        self.secrets = Secrets()
        self.add_secrets([*secrets, *url_secrets(self.target)])
        self.readonly = False
        timeout = float(os.environ.get("BAKEOFF_DB_TIMEOUT", "30"))
        parent = Path(self.target).parent
        if self.dialect is SQLITE and self.target != ":memory:" and not parent.is_dir():
            raise StoreError(  # a typo in --db is not a directory to make
                f"no directory {parent} for the database {self.path}: create it, or give --db "
                "(or BAKEOFF_DB) a path in an existing directory"
            )
        try:
            self.db: Connection = self.dialect.connect(self.target, timeout)
            migrate(self.db)
        except ImportError as e:  # a postgresql:// URL without the driver installed
            raise StoreError(str(e)) from None
        except Exception as e:
            if not self.dialect.is_error(e):
                raise
            if self.dialect is SQLITE and self._open_readonly(e, timeout):  # type: ignore[arg-type]
                return
            if hasattr(self, "db"):  # connected, then the migration failed
                with suppress(Exception):
                    self.db.close()
            raise StoreError(f"cannot open database {self.path}: {self._why(e)}") from None

    def _why(self, e: BaseException) -> str:
        """The driver's message, without any secret, with what to do."""
        text = self.scrub_error(str(e).strip()) or type(e).__name__
        hint = self.dialect.hint(text)
        if self.dialect is SQLITE and self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not os.access(parent, os.W_OK):
                hint = f"{parent} is read-only: use --db somewhere writable"
        return text + (f" ({hint})" if hint else "")

    @property
    def home(self) -> Path:
        """Where files that go with this database (its reports) are written by default: the
        database file's folder, or the working directory for a server database."""
        return self.dialect.home(self.target)

    def _open_readonly(self, error: sqlite3.Error, timeout: float) -> bool:  # SQLite only
        """A database on read-only media (or without write permission) can still be read: open it
        immutable, so that `show`, `ui`, `report` and `export` work; any write then fails clearly."""
        text = str(error)
        if self.path == ":memory:" or not Path(self.path).is_file():
            return False
        if not ("readonly" in text or "read-only" in text or "unable to open" in text):
            return False
        with suppress(Exception):
            self.db.close()
        wal = Path(self.path + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            raise StoreError(
                f"the database {self.path} is read-only and has writes still in {wal.name} that "
                "only a writable copy can apply: copy both files somewhere writable"
            ) from None
        try:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro&immutable=1"
            ro = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            ro.row_factory = sqlite3.Row
            self.db = ro
            done = {r[0] for r in ro.execute("SELECT name FROM _migrations")}
        except sqlite3.Error:
            return False
        from bakeoff.store._migrations import MIGRATIONS

        if {name for name, _ in MIGRATIONS} - done:
            raise StoreError(
                f"the database {self.path} is read-only and older than this bakeoff "
                "(it needs a schema migration): copy it somewhere writable"
            ) from None
        self.readonly = True
        return True

    def close(self) -> None:
        self.db.close()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Keys this process holds: kept out of what is stored by the rules of `_secrets`."""
        self.secrets.add(secrets)

    @staticmethod
    def _valid(text: str) -> str:
        """Text SQLite can take: a header's undecodable bytes arrive as lone surrogates, which are
        replaced."""
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = text.encode("utf-8", "replace").decode("utf-8")
        return text

    def scrub(self, text: str | None) -> str | None:
        """Text about to be stored that may be data (a reply, a dataset record): a key long enough
        to redact safely is `***`; nothing else is changed."""
        if text is None:
            return text
        return self.secrets.data(self._valid(text))

    def scrub_error(self, text: str | None) -> str | None:
        """An error body or message about to be stored or shown: as `scrub`, and withheld whole
        if it holds a key too short to redact."""
        if text is None:
            return text
        return self.secrets.error(self._valid(text))

    def _scrubbed(self, v: Any) -> Any:
        return self.scrub(v) if isinstance(v, str) else v

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic write. A database that cannot be written (disk full, read-only, locked by
        another process past the busy timeout, a server gone) raises StoreError with what to do;
        the transaction is rolled back, so what was stored before stays whole."""
        try:
            self.db.execute(self.dialect.begin)
        except Exception as e:
            if not self.dialect.is_error(e):
                raise
            raise StoreError(self._write_error(e)) from None
        try:
            yield self.db
        except BaseException as e:
            with suppress(Exception):
                self.db.execute("ROLLBACK")
            if self.dialect.storage_fault(e):
                raise StoreError(self._write_error(e)) from None
            raise  # a constraint violation is a bug, not a storage fault: as it is
        else:
            try:
                self.db.execute("COMMIT")
            except Exception as e:
                with suppress(Exception):
                    self.db.execute("ROLLBACK")
                if not self.dialect.is_error(e):
                    raise
                raise StoreError(self._write_error(e)) from None

    def _write_error(self, e: BaseException) -> str:
        return (
            f"cannot write to the database {self.path}: {self._why(e)}"
            "; everything stored before this write is kept"
        )

    # -- runs ------------------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        *,
        config_hash: str,
        lineup_json: str,
        source: str | None,
        reference: str | None,
        endpoints: list[Mapping[str, object]],
        version: str,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, pid, host, config_hash, lineup_json,"
                " source, reference, bakeoff_version) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now_iso(),
                    os.getpid(),
                    socket.gethostname(),
                    config_hash,
                    lineup_json,  # holds no key: lineups._keys
                    source,
                    reference,
                    version,
                ),
            )
            for ep in endpoints:
                db.execute(
                    "INSERT INTO endpoints (run_id, name, provider, base_url, model, is_reference,"
                    " config_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        ep["name"],
                        ep["provider"],
                        ep.get("base_url"),
                        ep["model"],
                        int(ep["name"] == reference),
                        dumps(ep),
                    ),
                )

    def set_run_status(self, run_id: str, status: str) -> None:
        finished = now_iso() if status in ("complete", "failed", "interrupted") else None
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, pid = ?, host = ? WHERE id = ?",
                (
                    status,
                    finished,
                    os.getpid() if status == "running" else None,
                    socket.gethostname() if status == "running" else None,
                    run_id,
                ),
            )

    # -- items -----------------------------------------------------------------------------------
    def add_items(self, run_id: str, suite: str, items: list[Mapping[str, object]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO items (run_id, suite, item_id, tier, input_json, target_json, meta_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        run_id,
                        suite,
                        it["id"],
                        it.get("tier"),
                        self.scrub(dumps(it["input"])),  # a key rendered into a prompt
                        self.scrub(dumps(it.get("target"))),
                        self.scrub(dumps(it.get("meta") or {})),
                    )
                    for it in items
                ],
            )

    # -- calls -----------------------------------------------------------------------------------
    def record_call(
        self,
        record: CallRecord,
        attempts: Sequence[Attempt],
        scores: Sequence[ScoreRow],
    ) -> None:
        """Store one finished call (success or final error) with its attempts and scores, atomically.

        The call id is the conflict key: an error stored under it (from an earlier session of the
        run) is replaced, a success is kept — when two processes resume one run and both make a
        call, the first success stored is the call, once.
        """
        call = record.columns()
        scrub, error = self.scrub, self.scrub_error
        for col in ("error_detail", "response_raw") if record.status == "error" else ():
            text = call[col]  # an error body may echo the Authorization header
            call[col] = error(text if isinstance(text, str) else None)
        values = tuple(scrub(v) if isinstance(v, str) else v for v in call.values())
        with self.transaction() as db:
            if not _insert_call(db, record.id, tuple(call), values, ok=record.status == "ok"):
                return
            db.executemany(
                "INSERT INTO attempts (call_id, n, started_at, duration_ms, http_status,"
                " error_class, error_detail, decision, decision_reason, wait_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        call["id"],
                        a["n"],
                        a["started_at"],
                        a["duration_ms"],
                        a.get("http_status"),
                        a.get("error_class"),
                        error(a.get("error_detail")),
                        a.get("decision"),
                        a.get("decision_reason"),
                        a.get("wait_s"),
                    )
                    for a in attempts
                ],
            )
            db.executemany(
                "INSERT INTO scores (call_id, scorer, value, passed, detail) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        call["id"],
                        s["scorer"],
                        s["value"],
                        s.get("passed"),
                        scrub(s.get("detail")),
                    )
                    for s in scores
                ],
            )

    def record_side_call(self, record: SideCallRecord) -> None:
        """Store the bill of a probe's or a judge's call (`side_calls`)."""
        row = {k: self.scrub(v) if isinstance(v, str) else v for k, v in record.columns().items()}
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO side_calls ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )

    # -- perf runs and probes ---------------------------------------------------------------------
    def create_perf(
        self, perf_id: str, run_id: str | None, lineup_json: str, config: Mapping[str, object]
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO perf_runs (id, run_id, created_at, status, lineup_json, config_json)"
                " VALUES (?, ?, ?, 'running', ?, ?)",
                (perf_id, run_id, now_iso(), lineup_json, dumps(config)),
            )

    def add_perf_requests(
        self, perf_id: str, endpoint: str, level: str, records: list[PerfRecord]
    ) -> None:
        """Store a level's requests (one row each, keyed by `seq`)."""
        if not records:
            return
        cols = ("perf_id", "endpoint", "level", *PERF_COLUMNS, "chunks_json")
        sql = upsert("perf_requests", cols, ("perf_id", "endpoint", "level", "seq"))
        rows = [
            (
                perf_id,
                endpoint,
                level,
                *(self._scrubbed(r[c]) for c in PERF_COLUMNS),
                dumps(r["chunks"]) if r["chunks"] else None,
            )
            for r in records
        ]
        with self.transaction() as db:
            db.executemany(sql, rows)

    def finish_perf(self, perf_id: str, status: str, summary: Mapping[str, object]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE perf_runs SET status = ?, finished_at = ?, summary_json = ? WHERE id = ?",
                (status, now_iso(), self.scrub(dumps(summary)), perf_id),
            )

    def put_probe(self, owner_id: str, endpoint: str, result: ProbeResult) -> None:
        with self.transaction() as db:
            db.execute(
                upsert(
                    "probes",
                    ("owner_id", "endpoint", "computed_at", "result_json"),
                    ("owner_id", "endpoint"),
                ),
                (owner_id, endpoint, now_iso(), self.scrub(dumps(result))),
            )

    # -- arena votes -----------------------------------------------------------------------------
    def add_vote(self, run_id: str, vote: VoteRecord) -> None:
        with self.transaction() as db:
            db.execute(
                'INSERT INTO votes (run_id, suite, item_id, repeat, "left", "right", winner, voter,'
                " left_chars, right_chars, detail_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    vote.suite,
                    vote.item_id,
                    vote.repeat,
                    vote.left,
                    vote.right,
                    vote.winner,
                    vote.voter,
                    vote.left_chars,
                    vote.right_chars,
                    self.scrub(dumps(vote.detail)) if vote.detail else None,
                    now_iso(),
                ),
            )

    def put_verdict(self, run_id: str, endpoint: str, verdict: Verdict) -> None:
        """Keep an endpoint's verdict (its kind and p-value in columns, the whole in JSON)."""
        with self.transaction() as db:
            db.execute(
                upsert(
                    "verdicts",
                    ("run_id", "endpoint", "computed_at", "verdict", "p_value", "evidence_json"),
                    ("run_id", "endpoint"),
                ),
                (
                    run_id,
                    endpoint,
                    now_iso(),
                    verdict.verdict,
                    verdict.p_value,
                    self.scrub(dumps(verdict.to_json())),
                ),
            )

    # -- derived results -------------------------------------------------------------------------
    def cache_summary(self, run_id: str, key: str, summary: Any) -> None:
        """Keep a run's summary under `key` (its data's fingerprint and the code's), dropping the
        ones kept for earlier states of the run. Nothing is written on a read-only database. Two
        processes summarising the same state at once (a team store) store it once: the same key
        holds the same summary, so the second insert is skipped, not an error."""
        if self.readonly:
            return
        prefix = f"summary:{run_id}:"
        with self.transaction() as db:
            db.execute("DELETE FROM response_cache WHERE key LIKE ? || '%'", (prefix,))
            db.execute(
                "INSERT INTO response_cache (key, created_at, result_json) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (prefix + key, time.time(), self.scrub(dumps(summary))),
            )

    # -- response cache --------------------------------------------------------------------------
    def cache_put(self, key: str, result: Any) -> None:
        with self.transaction() as db:
            db.execute(
                upsert("response_cache", ("key", "created_at", "result_json"), ("key",)),
                (key, time.time(), self.scrub(dumps(result))),
            )
