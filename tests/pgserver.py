"""A real PostgreSQL server for the tests: Debian's `postgresql` package (`make test` installs it),
initialised in a temporary directory, run as an unprivileged user (initdb and postgres refuse root),
on a free loopback port; stopped at the end of the session."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

USER = "bakeoff"  # the server's superuser (trust authentication on loopback only)


def bindir() -> Path | None:
    """The server's binaries: $BAKEOFF_PG_BIN, else the newest Debian install
    (/usr/lib/postgresql/<version>/bin), else a `postgres` on PATH."""
    if os.environ.get("BAKEOFF_PG_BIN"):
        d = Path(os.environ["BAKEOFF_PG_BIN"])
        return d if (d / "postgres").is_file() else None
    debian = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1]
    found = shutil.which("postgres")
    return Path(found).parent if found else None


# a test server: no durability (fsync off), room for the concurrency tests' connections
_SETTINGS = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
_SETTINGS += ["-c", "max_connections=200"]
_INIT = ["-E", "UTF8", "--no-sync", "--no-instructions"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """initdb + postgres in a temporary directory, owned by `nobody` when run as root."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="bakeoff-pg-"))
        self.as_user: dict[str, Any] = {}
        if os.geteuid() == 0:  # as nobody: its own data directory, nothing else of ours
            os.chown(self.base, 65534, 65534)
            self.as_user = {"user": 65534, "group": 65534, "extra_groups": []}
        data = self.base / "data"
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", *_INIT],
            check=True,
            capture_output=True,
            cwd=self.base,
            **self.as_user,
        )
        self.port = _free_port()
        self.log = open(self.base / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-k",
                str(self.base),
                *_SETTINGS,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.base,
            **self.as_user,
        )
        self._wait_ready()
        self.n = 0

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        end = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.stop()
                    log = (self.base / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start:\n{log[-2000:]}") from None
                time.sleep(0.1)

    def url(self, dbname: str, password: str | None = None) -> str:
        user = f"{USER}:{password}" if password else USER
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its name."""
        import psycopg

        self.n += 1
        name = f"t{self.n}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # a fast shutdown
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)
