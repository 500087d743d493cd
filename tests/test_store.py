import os
import socket
import sqlite3
from contextlib import closing
from dataclasses import replace

import pytest

from bakeoff.store import MIGRATIONS, WITHHELD, CallRecord, Store, migrate

try:
    import psycopg

    INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
except ImportError:
    INTEGRITY_ERRORS = (sqlite3.IntegrityError,)


def test_migrations_are_recorded_and_idempotent(db_target):
    s = Store(db_target)
    names = [r[0] for r in s.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [n for n, _ in MIGRATIONS]
    assert migrate(s.db) == []
    s.close()
    s2 = Store(db_target)  # reopening applies nothing twice
    assert s2.db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    s2.close()


def test_wal_mode(tmp_path):
    s = Store(tmp_path / "a.db")
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_call_is_atomic_and_scrubs_secrets(db_target):
    s = _store_with_run(db_target, secrets=["topsecret123-0123456789"])
    call = CallRecord(
        id="c1",
        run_id="r1",
        endpoint="e",
        suite="s",
        item_id="i",
        repeat=0,
        status="error",
        error_class="auth",
        error_detail="key topsecret123-0123456789 rejected",
        n_attempts=1,
        cached=False,
        started_at=0.0,
        finished_at=1.0,
        request={},
    )
    # a score row that violates the schema makes the whole call roll back
    bad_score = [{"scorer": "x", "value": None}]
    with pytest.raises(INTEGRITY_ERRORS):
        s.record_call(call, [], bad_score)
    assert s.calls("r1") == []
    s.record_call(call, [], [])
    (row,) = s.calls("r1")
    assert row["error_detail"] == "key *** rejected"
    s.close()


def test_redaction_never_rewrites_data_and_withholds_errors_holding_a_short_key(db_target):
    """A short key (vLLM's dummy `EMPTY`, `x`) is never replaced in what is stored: the lineup and
    the model's output are kept as they are; an error body holding it is withheld whole. A long
    key is `***` wherever it occurs (issue #31, item 5)."""
    long_key = "sk-evil-SECRET-123"
    s = Store(db_target, secrets=["EMPTY", "x", long_key])
    lineup = '{"defaults": {"max_tokens": 8}, "extra_body": {"x": 1}}'
    endpoints = [{"name": "e", "provider": "openai", "model": "max_tokens", "extra": "x"}]
    s.create_run(
        "r1",
        config_hash="h",
        lineup_json=lineup,
        source=None,
        reference=None,
        endpoints=endpoints,
        version="0",
    )
    s.record_call(_call("ok1", "ok", "Nothing is EMPTY here, x marks it"), [], [])
    s.record_call(_call("ok2", "ok", f"the key is {long_key}!"), [], [])
    bodies = {"e1": "unauthorized: got Bearer EMPTY", "e2": f"got Bearer {long_key} here"}
    for cid, body in bodies.items():
        call = replace(_call(cid, "error", ""), error_detail=body, response_raw=body)
        attempt = {"n": 1, "started_at": 0.0, "duration_ms": 1.0, "error_detail": body}
        s.record_call(call, [attempt], [])
    run = s.db.execute("SELECT lineup_json FROM runs").fetchone()[0]
    config = s.db.execute("SELECT config_json FROM endpoints").fetchone()[0]
    assert run == lineup and "max_tokens" in config and '"x"' in config
    rows = {r["id"]: r for r in s.calls("r1")}
    assert rows["ok1"]["output_text"] == "Nothing is EMPTY here, x marks it"
    assert rows["ok2"]["output_text"] == "the key is ***!"
    assert rows["e1"]["error_detail"] == rows["e1"]["response_raw"] == WITHHELD
    assert rows["e2"]["error_detail"] == rows["e2"]["response_raw"] == "got Bearer *** here"
    details = [r[0] for r in s.db.execute("SELECT error_detail FROM attempts ORDER BY call_id")]
    assert details == [WITHHELD, "got Bearer *** here"]
    s.close()


def test_unopenable_database_gives_a_clear_error(tmp_path):
    from bakeoff.store import StoreError

    d = tmp_path / "dir.db"
    d.mkdir()
    with pytest.raises(StoreError, match="cannot open database"):
        Store(d)


def _call(call_id: str, status: str, output: str) -> CallRecord:
    return CallRecord(
        id=call_id,
        run_id="r1",
        endpoint="e",
        suite="s",
        item_id=call_id,
        repeat=0,
        status=status,  # type: ignore[arg-type]
        error_class=None if status == "ok" else "server_error",
        output_text=output,
        n_attempts=1,
        cached=False,
        started_at=0.0,
        finished_at=1.0,
        request={},
    )


def _store_with_run(target: str, secrets: list[str] | None = None) -> Store:
    s = Store(target, secrets=secrets or ())
    s.create_run(
        "r1",
        config_hash="h",
        lineup_json="{}",
        source=None,
        reference=None,
        endpoints=[{"name": "e", "provider": "openai", "model": "m"}],
        version="0",
    )
    return s


def test_the_call_id_is_the_conflict_key_an_error_is_replaced_a_success_kept(db_target):
    s = _store_with_run(db_target)
    attempt = [{"n": 1, "started_at": 0.0, "duration_ms": 1.0}]
    score = [{"scorer": "exact", "value": 1.0, "passed": True}]
    s.record_call(_call("c1", "error", "first"), attempt, [])
    s.record_call(_call("c1", "ok", "second"), attempt, score)  # a later session's success
    s.record_call(_call("c1", "error", "third"), attempt, [])  # a racing process's error
    s.record_call(_call("c1", "ok", "fourth"), attempt, score)  # and its success
    (row,) = s.calls("r1")
    assert (row["status"], row["output_text"]) == ("ok", "second")
    assert len(s.attempts("c1")) == 1
    assert [(r["scorer"], r["passed"]) for r in s.scores("r1")] == [("exact", 1)]
    s.close()


def test_two_processes_writing_one_call_at_once_store_it_once(db_target):
    """One writer holds its uncommitted call while another writes the same call id: the second
    waits, then keeps the first's success — no duplicate, no constraint error, nothing lost."""
    import threading

    first = _store_with_run(db_target)
    errors: list[BaseException] = []

    def write_second() -> None:
        second = Store(db_target)  # (a SQLite connection belongs to the thread that opened it)
        try:
            second.record_call(_call("c1", "ok", "second"), [], [])
        except BaseException as e:
            errors.append(e)
        finally:
            second.close()

    t = threading.Thread(target=write_second)
    with first.transaction() as db:
        db.execute(
            "INSERT INTO calls (id, run_id, endpoint, suite, item_id, repeat, status, n_attempts,"
            " started_at, finished_at, request_json, output_text)"
            " VALUES ('c1', 'r1', 'e', 's', 'c1', 0, 'ok', 1, 0, 1, '{}', 'first')"
        )
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the second writer should wait for the first's transaction"
    t.join(30)
    assert not errors, errors
    rows = first.calls("r1")
    assert [(r["status"], r["output_text"]) for r in rows] == [("ok", "first")]
    first.close()


def test_a_run_running_on_another_machine_is_not_taken_over_by_a_rerun(db_target):
    """With one store for several machines, a `running` run's pid says nothing about a process on
    another host: the same lineup started here makes a run of its own (`--resume ID` takes the
    other over); a run left `running` here by a dead process is resumed."""
    s = _store_with_run(db_target)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    s.db.execute("UPDATE runs SET pid = ?, host = 'ci-runner-7' WHERE id = 'r1'", (dead,))
    assert s.unfinished_run("h") is None
    s.db.execute("UPDATE runs SET host = ? WHERE id = 'r1'", (socket.gethostname(),))
    assert s.unfinished_run("h")["id"] == "r1"
    s.db.execute("UPDATE runs SET pid = ? WHERE id = 'r1'", (os.getpid(),))
    assert s.unfinished_run("h") is None  # alive here
    s.close()


def test_text_postgresql_cannot_hold_is_stored_with_a_replacement_character(db_target):
    """A hostile endpoint's NUL byte or undecodable header byte (a lone surrogate) does not lose the
    call: SQLite keeps the NUL, PostgreSQL's text cannot and stores U+FFFD in its place."""
    s = _store_with_run(db_target)
    s.record_call(_call("c1", "ok", "a\x00b \udc80c"), [], [])
    (row,) = s.calls("r1")
    nul = "\ufffd" if db_target.startswith("postgresql://") else "\x00"
    assert row["output_text"] == f"a{nul}b ?c"  # (the store's scrubber replaced the surrogate)
    s.close()


def _open_at_once(path: str, barrier, errors) -> None:  # in a forked process
    barrier.wait()
    try:
        Store(path).close()
    except Exception as e:  # reported to the parent
        errors.put(repr(e))


def test_processes_opening_a_new_database_together_migrate_it_once(tmp_path):
    """Four processes open the same new SQLite file at one moment, ten times over: every one
    opens it (before: "duplicate column name: owner" when two ran m010 together) and each
    migration is recorded once."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for i in range(10):
        path = str(tmp_path / f"new-{i}.db")
        barrier, errors = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, errors)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs)
        assert errors.empty(), errors.get()
        with closing(Store(path)) as store:
            names = [r[0] for r in store.db.execute("SELECT name FROM _migrations")]
        assert len(names) == len(set(names)) == len(MIGRATIONS)
