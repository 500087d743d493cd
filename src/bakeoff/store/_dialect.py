"""The one place that knows which database engine holds the store: SQLite (a file, the embedded
default) or PostgreSQL (a `postgresql://` URL, the team store). Everything else in the store writes
one SQL — `?` placeholders, `ON CONFLICT` upserts, the SQLite DDL of the migrations — and reads rows
by index or by column name; the PostgreSQL dialect translates, connects and classifies errors."""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

PG_SCHEMES = ("postgresql://", "postgres://")


class Row(Protocol):
    """A result row: by index or by column name (`sqlite3.Row`, or `PgRow`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store needs of a connection: `sqlite3.Connection` has it, `PgConnection` too."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...
    def executescript(self, sql: str, /) -> Any: ...
    def close(self) -> None: ...


def is_server_url(target: str | os.PathLike[str]) -> bool:
    return str(target).startswith(PG_SCHEMES)


def redact(target: str | os.PathLike[str]) -> str:
    """The database as it may be shown: a URL's password (in its user part or its query) is `***`."""
    text = str(target)
    if not is_server_url(text):
        return text
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if "@" in netloc:
            user, host = netloc.rsplit("@", 1)
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*"
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return text.split("://", 1)[0] + "://***"  # unparseable: show nothing of it


def url_secrets(target: str) -> list[str]:
    """The password a URL carries, for the scrubber: as written, decoded, and as far as a stray `@`
    (where libpq would end it)."""
    if not is_server_url(target):
        return []
    try:
        parts = urlsplit(target)
        query = parse_qsl(parts.query)
    except ValueError:
        return []
    password = parts.netloc.rpartition("@")[0].partition(":")[2]
    found = {password, unquote(password), password.split("@")[0]}
    found.update(v for k, v in query if k == "password")
    return sorted(s for s in found if len(s) >= 4)


class Dialect:
    """SQLite: the statements as the store writes them."""

    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # take the write lock up front: no deadlock between two writers

    def connect(self, target: str, timeout: float) -> Connection:
        db = sqlite3.connect(target, timeout=timeout, isolation_level=None)
        db.row_factory = sqlite3.Row
        _wal(db, timeout)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def is_error(self, e: BaseException) -> bool:
        return isinstance(e, sqlite3.Error)

    def storage_fault(self, e: BaseException) -> bool:
        """Disk full, read-only, locked, I/O error, corruption — not a constraint or API misuse."""
        return isinstance(e, sqlite3.OperationalError) or type(e) is sqlite3.DatabaseError

    def hint(self, text: str) -> str:
        if "full" in text:
            return "free some disk space"
        if "readonly" in text or "read-only" in text:
            return "make the database file and its folder writable, or use --db elsewhere"
        if "locked" in text or "busy" in text:
            return "another process holds the database; wait for it or stop it"
        return ""

    def lock_migrations(self, db: Connection) -> None:
        """Within the migration's transaction: one process migrates at a time (SQLite: the
        write lock of BEGIN IMMEDIATE does it)."""

    def exists(self, target: str) -> bool:
        return target == ":memory:" or Path(target).exists()

    def home(self, target: str) -> Path:
        """Where files that go with the database (its reports) are written by default."""
        return Path(target).resolve().parent


class Postgres(Dialect):
    """PostgreSQL through psycopg 3 (`pip install bakeoff[postgres]`)."""

    name = "postgresql"
    begin = "BEGIN"

    def connect(self, target: str, timeout: float) -> Connection:
        try:
            import psycopg
        except ImportError:
            raise ImportError(
                "a postgresql:// database needs psycopg: pip install 'bakeoff[postgres]'"
            ) from None
        raw = psycopg.connect(
            target,
            autocommit=True,  # reads see every committed write; `transaction()` sends BEGIN
            connect_timeout=max(1, round(timeout)),
            options=f"-c lock_timeout={round(timeout * 1000)}",
            row_factory=_pg_row_factory,
        )
        _adapt(raw)
        return PgConnection(raw)

    def is_error(self, e: BaseException) -> bool:
        import psycopg

        return isinstance(e, psycopg.Error)

    def storage_fault(self, e: BaseException) -> bool:
        """The server gone, out of disk or memory, a read-only or forbidden write, a lock not
        granted in time — not a constraint or a bug in the SQL."""
        import psycopg
        from psycopg import errors

        return isinstance(
            e,
            psycopg.OperationalError
            | psycopg.InterfaceError
            | errors.ReadOnlySqlTransaction
            | errors.InsufficientPrivilege,
        )

    def hint(self, text: str) -> str:
        if "could not connect" in text or "Connection refused" in text or "timeout" in text:
            return "is the PostgreSQL server running, and the URL's host and port right?"
        if "does not exist" in text:
            return "create the database first (createdb), or name another in the URL"
        if "authentication" in text or "password" in text:
            return "check the user and password (the URL, PGPASSWORD or ~/.pgpass)"
        if "permission denied" in text or "read-only" in text:
            return "the user needs CREATE, INSERT, UPDATE and DELETE on the database"
        if "disk" in text or "space" in text:
            return "the server is out of disk space"
        if "lock" in text:
            return "another session holds a lock; wait for it or stop it"
        return ""

    def lock_migrations(self, db: Connection) -> None:
        """Runs opening a new database at once migrate it one at a time (a transaction-scoped
        advisory lock: released by the COMMIT)."""
        db.execute("SELECT pg_advisory_xact_lock(7368426512)")

    def exists(self, target: str) -> bool:
        return True  # a server database is created by its administrator: connecting tells

    def home(self, target: str) -> Path:
        return Path.cwd()


SQLITE = Dialect()
POSTGRES = Postgres()


def dialect_for(target: str) -> Dialect:
    return POSTGRES if is_server_url(target) else SQLITE


# -- PostgreSQL: statements, DDL, rows, values -------------------------------------------------------


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """A statement with `?` placeholders in psycopg's `%s` style (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


_TABLE = re.compile(r"CREATE TABLE (\w+)")


@functools.lru_cache(maxsize=64)
def pg_ddl(script: str) -> str:
    """A migration's SQLite DDL for PostgreSQL: REAL is a double (a unix time needs it), an
    `INTEGER PRIMARY KEY` is an identity, `left`/`right` are quoted, and each new table gets the
    `rowid` that SQLite gives every table (reads order by insertion with it), as its last column."""
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", script)
    out = re.sub(
        r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", out
    )
    out = re.sub(r"^(\s+)(left|right) ", r'\1"\2" ', out, flags=re.M)
    rowids = "".join(
        f"\nALTER TABLE {t} ADD COLUMN rowid BIGINT GENERATED BY DEFAULT AS IDENTITY;"
        for t in _TABLE.findall(out)
    )
    return out + rowids


class PgRow:
    """A row read by index or by column name, as `sqlite3.Row` is."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                raise IndexError(f"no column {key!r}") from None
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return self._index == other._index and tuple(self._values) == tuple(other._values)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._values))

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=False))!r})"


def _pg_row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description or ()]
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)  # a repeated name is the first column's, as in sqlite3.Row
    return lambda values: PgRow(index, values)


def _adapt(raw: Any) -> None:
    """Values as the SQLite store takes them: a bool into an INTEGER column (1/0); text with a NUL
    (PostgreSQL cannot store one) or a lone surrogate gets U+FFFD in its place; a numeric result
    (a SUM of integers) reads as a float, not a Decimal."""
    from psycopg.adapt import Dumper
    from psycopg.types.numeric import FloatLoader

    class BoolAsInt(Dumper):
        oid = raw.adapters.types["int4"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class Text(Dumper):
        def dump(self, obj: Any) -> bytes:
            if "\x00" in obj:
                obj = obj.replace("\x00", "\ufffd")
            return obj.encode("utf-8", "replace")  # type: ignore[no-any-return]

    raw.adapters.register_dumper(bool, BoolAsInt)
    raw.adapters.register_dumper(str, Text)
    raw.adapters.register_loader("numeric", FloatLoader)


class PgConnection:
    """A psycopg connection that takes the store's statements as written (`?` placeholders,
    SQLite DDL in `executescript`)."""

    dialect = POSTGRES

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        cur: Cursor = self.raw.execute(pg_sql(sql), tuple(parameters))
        return cur

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        cur = self.raw.cursor()
        cur.executemany(pg_sql(sql), list(parameters))
        done: Cursor = cur
        return done

    def executescript(self, sql: str, /) -> Any:
        return self.raw.execute(pg_ddl(sql))

    def close(self) -> None:
        self.raw.close()


def _wal(db: sqlite3.Connection, timeout: float) -> None:
    """WAL mode, waiting as long as any other lock: a new file's switch to WAL takes a lock that
    SQLite's busy handler does not wait for ("database is locked" at once when several processes
    open a new database together)."""
    end = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= end:
                raise
            time.sleep(0.02)
