"""Versioned, named schema migrations (applied in order, recorded in `_migrations`).

Each is written once, in SQLite's DDL; on PostgreSQL the connection's `executescript` translates
it (`_dialect.pg_ddl`: types, identities, quoting, `rowid`), so both stores have the same
migrations under the same names, and a test applies every one to a real PostgreSQL server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from bakeoff.store._dialect import SQLITE, Connection, Dialect

Migration = Callable[[Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


_INITIAL = """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,          -- running | interrupted | complete | failed
            pid INTEGER,
            config_hash TEXT NOT NULL,
            lineup_json TEXT NOT NULL,     -- the validated lineup (env var names only, no keys)
            source TEXT,                   -- lineup file path, if any
            reference TEXT,
            bakeoff_version TEXT
        );
        CREATE TABLE endpoints (
            run_id TEXT NOT NULL REFERENCES runs(id),
            name TEXT NOT NULL,
            provider TEXT NOT NULL,
            base_url TEXT,
            model TEXT NOT NULL,
            is_reference INTEGER NOT NULL DEFAULT 0,
            config_json TEXT NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        CREATE TABLE items (
            run_id TEXT NOT NULL REFERENCES runs(id),
            suite TEXT NOT NULL,
            item_id TEXT NOT NULL,
            tier TEXT,
            input_json TEXT NOT NULL,      -- messages or prompt, and per-item params
            target_json TEXT,
            meta_json TEXT,
            PRIMARY KEY (run_id, suite, item_id)
        );
        CREATE TABLE calls (
            id TEXT PRIMARY KEY,           -- deterministic: run, endpoint, suite, item, repeat
            run_id TEXT NOT NULL REFERENCES runs(id),
            endpoint TEXT NOT NULL,
            suite TEXT NOT NULL,
            item_id TEXT NOT NULL,
            repeat INTEGER NOT NULL,
            status TEXT NOT NULL,          -- ok | error
            error_class TEXT,
            error_detail TEXT,
            n_attempts INTEGER NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            started_at REAL NOT NULL,      -- unix time of the first attempt
            finished_at REAL NOT NULL,
            request_json TEXT NOT NULL,    -- url, redacted headers, body
            response_raw TEXT,             -- body, or the stream's event data lines
            http_status INTEGER,
            output_text TEXT,
            reasoning_text TEXT,
            finish_reason TEXT,
            tool_calls_json TEXT,
            logprobs_json TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            usage_source TEXT,
            upstream TEXT,
            response_model TEXT,
            first_byte_ms REAL,
            role_ms REAL,
            ttft_ms REAL,
            last_token_ms REAL,
            e2e_ms REAL,
            chunk_ms_json TEXT
        );
        CREATE INDEX calls_run ON calls(run_id, endpoint, suite);
        CREATE TABLE attempts (
            call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            started_at REAL NOT NULL,
            duration_ms REAL NOT NULL,
            http_status INTEGER,
            error_class TEXT,
            error_detail TEXT,
            decision TEXT,                 -- retry | give_up | ok
            decision_reason TEXT,
            wait_s REAL,
            PRIMARY KEY (call_id, n)
        );
        CREATE TABLE scores (
            call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            scorer TEXT NOT NULL,
            value REAL NOT NULL,
            passed INTEGER,
            detail TEXT,
            PRIMARY KEY (call_id, scorer)
        );
        CREATE TABLE response_cache (
            key TEXT PRIMARY KEY,          -- hash of url, body and repeat index
            created_at REAL NOT NULL,
            result_json TEXT NOT NULL
        );
        """
"""The first schema (runs, endpoints, items, calls, attempts, scores, the response cache), as it
was first applied: a migration never changes once released."""


@migration
def m001_initial(db: Connection) -> None:
    db.executescript(_INITIAL)


@migration
def m002_verdicts(db: Connection) -> None:
    db.executescript(
        """
        CREATE TABLE verdicts (
            run_id TEXT NOT NULL REFERENCES runs(id),
            endpoint TEXT NOT NULL,
            computed_at TEXT NOT NULL,
            verdict TEXT NOT NULL,         -- same | different | inconclusive
            p_value REAL,
            evidence_json TEXT NOT NULL,   -- per-regime tests, behavioural checks, examples
            PRIMARY KEY (run_id, endpoint)
        );
        """
    )


@migration
def m003_perf_and_probes(db: Connection) -> None:
    db.executescript(
        """
        CREATE TABLE perf_runs (
            id TEXT PRIMARY KEY,
            run_id TEXT REFERENCES runs(id),   -- the suite run it belongs to, if any
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,              -- running | complete | interrupted | failed
            lineup_json TEXT NOT NULL,
            config_json TEXT NOT NULL,
            summary_json TEXT
        );
        CREATE TABLE perf_requests (
            perf_id TEXT NOT NULL REFERENCES perf_runs(id) ON DELETE CASCADE,
            endpoint TEXT NOT NULL,
            level TEXT NOT NULL,               -- "c=8" (closed loop) or "r=20" (open loop)
            seq INTEGER NOT NULL,
            phase TEXT NOT NULL,               -- warmup | measure | cooldown
            intended_ms REAL,                  -- intended send time, from the level's start
            lateness_ms REAL,                  -- actual send minus intended
            status TEXT NOT NULL,              -- ok | error
            error_class TEXT,
            first_byte_ms REAL,
            role_ms REAL,
            ttft_ms REAL,
            last_token_ms REAL,
            e2e_ms REAL,
            chunks_json TEXT,                  -- arrival of every token chunk, ms
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            token_source TEXT,                 -- usage | tokenizer | chunks
            usage_tokens INTEGER,
            counted_tokens INTEGER,
            PRIMARY KEY (perf_id, endpoint, level, seq)
        );
        CREATE TABLE probes (
            owner_id TEXT NOT NULL,            -- a run id or a perf id
            endpoint TEXT NOT NULL,
            computed_at TEXT NOT NULL,
            result_json TEXT NOT NULL,
            PRIMARY KEY (owner_id, endpoint)
        );
        """
    )


@migration
def m004_votes_and_item_index(db: Connection) -> None:
    db.executescript(
        """
        CREATE INDEX calls_item ON calls(run_id, suite, item_id);
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            suite TEXT NOT NULL,
            item_id TEXT NOT NULL,
            repeat INTEGER NOT NULL,
            left TEXT NOT NULL,                -- endpoint shown first (as "A")
            right TEXT NOT NULL,               -- endpoint shown second (as "B")
            winner TEXT NOT NULL,              -- left | right | tie | both_bad
            voter TEXT NOT NULL,               -- human | judge:<endpoint>
            left_chars INTEGER,
            right_chars INTEGER,
            detail_json TEXT,                  -- the judge's raw answers in both orders
            created_at TEXT NOT NULL
        );
        CREATE INDEX votes_run ON votes(run_id);
        """
    )


@migration
def m005_costs_and_side_calls(db: Connection) -> None:
    db.executescript(
        """
        ALTER TABLE calls ADD COLUMN cached_tokens INTEGER;  -- prompt tokens from its cache
        ALTER TABLE calls ADD COLUMN cost_usd REAL;          -- what the call was billed
        ALTER TABLE calls ADD COLUMN cost_source TEXT;       -- usage | price | list | cached
        ALTER TABLE calls ADD COLUMN pinned_upstream TEXT;   -- the upstream the lineup pinned
        CREATE TABLE side_calls (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,                -- a run id (or a perf id: `bakeoff probe`)
            endpoint TEXT NOT NULL,
            purpose TEXT NOT NULL,             -- probe | judge | arena-judge
            started_at REAL NOT NULL,
            status TEXT NOT NULL,              -- ok | error
            error_class TEXT,
            prompt_tokens INTEGER,
            cached_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            cost_source TEXT,
            upstream TEXT
        );
        CREATE INDEX side_calls_run ON side_calls(run_id, endpoint);
        """
    )


@migration
def m006_run_host(db: Connection) -> None:
    """The machine a run's process runs on: with a team store, a pid alone says nothing about a
    run started elsewhere."""
    db.executescript("ALTER TABLE runs ADD COLUMN host TEXT;")


@migration
def m007_analyses(db: Connection) -> None:
    """A run's audit analyses and its reference scorer's answers. `analyses`: the settings (and
    the scorer's identity) an analysis ran with, and its verdicts — the run's own (`id` 'run', the
    one `verdicts` holds) and every re-analysis with other settings, stored beside it, never over
    it. `scorer_answers`: each number the scorer gave (prompt tokens, per-token log-probabilities,
    ranks), so a re-analysis replays them and needs neither the model file nor its server."""
    db.executescript(
        """
        CREATE TABLE analyses (
            run_id TEXT NOT NULL REFERENCES runs(id),
            id TEXT NOT NULL,              -- 'run': the run's own; else a hash of its settings
            created_at TEXT NOT NULL,
            settings_json TEXT NOT NULL,   -- the audit settings as applied (seed, margin, ...)
            scorers_json TEXT NOT NULL,    -- role -> identity (file hash, or URL and model)
            verdicts_json TEXT,            -- endpoint -> verdict (NULL until analysed)
            PRIMARY KEY (run_id, id)
        );
        CREATE TABLE scorer_answers (
            run_id TEXT NOT NULL REFERENCES runs(id),
            scorer TEXT NOT NULL,          -- reference | alt:<name>
            key TEXT NOT NULL,             -- sha256 of what was asked
            answer_json TEXT NOT NULL,
            PRIMARY KEY (run_id, scorer, key)
        );
        """
    )


@migration
def m008_watches(db: Connection) -> None:
    """`bakeoff watch`: a watch (its settings and the clock its schedule starts from), its checks
    (each an ordinary run, `run_id`; `status` running until its detector steps are written, in the
    same transaction), each endpoint's detector step and state after each check, and the anchor
    prompts' baseline answers the checks are compared with, and the acknowledged changes after which an
    endpoint's baseline is formed anew."""
    db.executescript(
        """
        CREATE TABLE watches (
            name TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            origin REAL NOT NULL,          -- the watch's clock at creation: slot k is due at
                                           -- origin + k * every
            settings_json TEXT NOT NULL    -- pool seed, sizes, detector settings
        );
        CREATE TABLE watch_checks (
            watch TEXT NOT NULL REFERENCES watches(name),
            seq INTEGER NOT NULL,          -- 1, 2, ... in the order made
            slot INTEGER,                  -- the schedule's slot (--every); NULL for --once
            run_id TEXT REFERENCES runs(id),
            status TEXT NOT NULL,          -- running | done
            started_at REAL NOT NULL,      -- the watch's clock
            finished_at REAL,
            PRIMARY KEY (watch, seq)
        );
        CREATE TABLE watch_steps (
            watch TEXT NOT NULL REFERENCES watches(name),
            seq INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            phase TEXT NOT NULL,           -- baseline | watching | alarm
            gap INTEGER NOT NULL,
            alarm INTEGER NOT NULL,
            n INTEGER NOT NULL,            -- anchors compared with their baseline answer
            changed INTEGER NOT NULL,
            statistic REAL,
            threshold REAL NOT NULL,
            why TEXT,                      -- a gap's cause
            state_json TEXT NOT NULL,      -- the detector after this check
            PRIMARY KEY (watch, seq, endpoint)
        );
        CREATE TABLE watch_answers (
            watch TEXT NOT NULL REFERENCES watches(name),
            endpoint TEXT NOT NULL,
            epoch INTEGER NOT NULL,        -- the endpoint's baselines so far: 0, then +1 per ack
            item_id TEXT NOT NULL,
            seq INTEGER NOT NULL,          -- the check that answered it first
            answer TEXT NOT NULL,
            PRIMARY KEY (watch, endpoint, epoch, item_id)
        );
        CREATE TABLE watch_acks (          -- a change acknowledged: the baseline is formed anew
            watch TEXT NOT NULL REFERENCES watches(name),
            endpoint TEXT NOT NULL,
            after_seq INTEGER NOT NULL,    -- the last check before the new baseline
            acked_at TEXT NOT NULL,
            PRIMARY KEY (watch, endpoint, after_seq)
        );
        """
    )


@migration
def m009_watch_rechecks(db: Connection) -> None:
    """`bakeoff watch`: the targeted re-check of a crossing, kept with the step it decided (its
    run, the anchors re-asked, how many changed again, whether the alarm stood)."""
    db.executescript("ALTER TABLE watch_steps ADD COLUMN recheck_json TEXT;")


@migration
def m010_watch_leases(db: Connection) -> None:
    """`bakeoff watch` with several watcher processes: a running check's holder (`host:pid:token`)
    and the wall-clock time its hold lasts to (renewed while it runs); another watcher takes over
    only a check whose holder is gone."""
    db.executescript(
        "ALTER TABLE watch_checks ADD COLUMN owner TEXT;"
        " ALTER TABLE watch_checks ADD COLUMN lease_until REAL;"
    )


@migration
def m011_audit_stops(db: Connection) -> None:
    """Why a run's audit stopped before its budget, when its cost cap stopped it (`--max-cost`,
    `audit.max_cost`): the cap, what was spent and what the next round would have cost. A fact of
    the run, not of an analysis: a re-analysis of the same calls is told it, never recomputes it."""
    db.executescript(
        """
        CREATE TABLE audit_stops (
            run_id TEXT PRIMARY KEY REFERENCES runs(id),
            stop_json TEXT NOT NULL        -- AuditStop: cap, spent, next round, rounds made
        );
        """
    )


def migrate(db: Connection) -> list[str]:
    """Apply pending migrations; return the names applied. On PostgreSQL each is one transaction
    under a lock, so processes opening a new database together apply each migration once."""
    dialect: Dialect = getattr(db, "dialect", SQLITE)
    with _locked(db, dialect):
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY,"
            " applied_at TEXT NOT NULL)"
        )
    done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with _locked(db, dialect):
            if _applied(db, name):
                continue  # another process applied it while this one waited for the lock
            try:
                fn(db)
            except Exception as e:
                if dialect is SQLITE and _begun_by_another(e) and _applied_by_another(db, name):
                    continue
                raise
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
            )
        applied.append(name)
    return applied


def _applied(db: Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is not None


def _begun_by_another(e: Exception) -> bool:
    """The error of a statement another process's run of the same migration made first (any
    other error, a full disk say, is raised at once)."""
    text = str(e)
    return "already exists" in text or "duplicate column name" in text


def _applied_by_another(db: Connection, name: str, wait_s: float = 30.0) -> bool:
    """SQLite holds no lock across a migration (`executescript` commits as it goes): two processes
    opening a new database together both start it, and the second's first statement fails
    ("duplicate column name", "table ... already exists"). That one waits for the first to record
    it, and goes on as if it had waited for a lock."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if _applied(db, name):
            return True
        time.sleep(0.02)
    return False


@contextmanager
def _locked(db: Connection, dialect: Dialect) -> Iterator[None]:
    """SQLite: as before (`executescript` commits as it goes). PostgreSQL: one transaction holding
    the migration lock (DDL is transactional there: a failed migration leaves nothing)."""
    if dialect is SQLITE:
        with db:  # type: ignore[attr-defined]
            yield
        return
    db.execute(dialect.begin)
    try:
        dialect.lock_migrations(db)
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
