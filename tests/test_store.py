import sqlite3

import pytest

from bakeoff.store import MIGRATIONS, CallRecord, Store, migrate


def test_migrations_are_recorded_and_idempotent(tmp_path):
    s = Store(tmp_path / "a.db")
    names = [r[0] for r in s.db.execute("SELECT name FROM _migrations")]
    assert names == [n for n, _ in MIGRATIONS]
    assert migrate(s.db) == []
    s.close()
    s2 = Store(tmp_path / "a.db")  # reopening applies nothing twice
    assert s2.db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_wal_mode(tmp_path):
    s = Store(tmp_path / "a.db")
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_call_is_atomic_and_scrubs_secrets(tmp_path):
    s = Store(tmp_path / "a.db", secrets=["topsecret123"])
    s.create_run(
        "r1",
        config_hash="h",
        lineup_json="{}",
        source=None,
        reference=None,
        endpoints=[{"name": "e", "provider": "openai", "model": "m"}],
        version="0",
    )
    call = CallRecord(
        id="c1",
        run_id="r1",
        endpoint="e",
        suite="s",
        item_id="i",
        repeat=0,
        status="error",
        error_class="auth",
        error_detail="key topsecret123 rejected",
        n_attempts=1,
        cached=False,
        started_at=0.0,
        finished_at=1.0,
        request={},
    )
    # a score row that violates the schema makes the whole call roll back
    bad_score = [{"scorer": "x", "value": None}]
    with pytest.raises(sqlite3.IntegrityError):
        s.record_call(call, [], bad_score)
    assert s.calls("r1") == []
    s.record_call(call, [], [])
    (row,) = s.calls("r1")
    assert row["error_detail"] == "key *** rejected"


def test_unopenable_database_gives_a_clear_error(tmp_path):
    from bakeoff.store import StoreError

    d = tmp_path / "dir.db"
    d.mkdir()
    with pytest.raises(StoreError, match="cannot open database"):
        Store(d)
