"""Local servers, one per variant, on loopback ports: llama.cpp's (`python -m llama_cpp.server`,
started through `_llama_server.py`), or bakeoff's own over transformers
(`python -m bakeoff.local._torch_server`, engine `transformers`).

Each server is started in its own session (a Ctrl-C in the terminal reaches bakeoff, which stops the
servers after in-flight calls are stored) with the kernel told to kill it when its parent dies
(`PR_SET_PDEATHSIG`), so not even a `kill -9` of bakeoff leaves a server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from bakeoff.endpoints import open_session
from bakeoff.local._assets import cache_dir

_PR_SET_PDEATHSIG = 1

EngineName = Literal["llama.cpp", "transformers"]


class ServerError(Exception):
    """A server could not be started; the message names its log."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def threads_per_server(n_servers: int) -> int:
    """Split the machine's cores between servers (at least one thread each)."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, cores // max(n_servers, 1))


@dataclass
class LocalServer:
    name: str
    model_path: Path
    alias: str
    port: int
    n_threads: int
    n_ctx: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    engine: EngineName = "llama.cpp"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


@dataclass(frozen=True)
class ServerSettings:
    """How a local server runs: its threads, context and seed, its engine, and the engine's own
    settings (`n_batch` is llama.cpp's; `max_batch` and `forced_repetition_penalty` are the
    transformers server's)."""

    n_threads: int = 1
    n_ctx: int = 2048
    n_batch: int | None = None
    seed: int = 0
    engine: EngineName = "llama.cpp"
    max_batch: int | None = None
    forced_repetition_penalty: float | None = None

    def check(self, name: str) -> None:
        """A setting of the other engine is an error, not ignored."""
        if self.engine == "transformers":
            if self.n_batch is not None:
                raise ServerError(
                    f"{name}: n_batch is a llama.cpp setting; engine transformers has none"
                )
        elif self.max_batch is not None or self.forced_repetition_penalty is not None:
            raise ServerError(
                f"{name}: max_batch and forced_repetition_penalty are settings of engine "
                "transformers"
            )


def _llama_cmd(model_path: Path, alias: str, port: int, st: ServerSettings) -> list[str]:
    n_threads, n_ctx, n_batch, seed = st.n_threads, st.n_ctx, st.n_batch, st.seed
    cmd = [
        sys.executable,
        "-m",
        "bakeoff.local._llama_server",
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--n_ctx",
        str(n_ctx),
        "--seed",
        str(seed),
        "--verbose",
        "False",
        # the default (True) makes a new request cut the one being streamed
        "--interrupt_requests",
        "False",
    ]
    if n_batch is not None:
        cmd += ["--n_batch", str(n_batch)]
    return cmd


def _torch_cmd(model_path: Path, alias: str, port: int, st: ServerSettings) -> list[str]:
    n_threads, n_ctx, seed = st.n_threads, st.n_ctx, st.seed
    max_batch, forced_repetition_penalty = st.max_batch, st.forced_repetition_penalty
    cmd = [
        sys.executable,
        "-m",
        "bakeoff.local._torch_server",
        "--model",
        str(model_path),
        "--alias",
        alias,
        "--port",
        str(port),
        "--threads",
        str(n_threads),
        "--n-ctx",
        str(n_ctx),
        "--seed",
        str(seed),
    ]
    if max_batch is not None:
        cmd += ["--max-batch", str(max_batch)]
    if forced_repetition_penalty is not None:
        cmd += ["--forced-repetition-penalty", str(forced_repetition_penalty)]
    return cmd


def server_env() -> dict[str, str]:
    """The server's environment: ours, with OpenMP told to sleep rather than spin while it waits
    (unless the user chose). llama.cpp's CPU threads meet at a barrier on every operation; with
    OpenMP's default (spinning) a server of 2 threads on a 2-core machine with one core taken by
    another process answered a 64-token greedy call in 15-55 s instead of 0.6 s, and the passive
    policy in ~2 s (measured here; a local lineup always shares the machine with the client and
    its other servers)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def launch(
    name: str,
    model_path: Path,
    *,
    alias: str,
    port: int = 0,
    settings: ServerSettings | None = None,
) -> LocalServer:
    """Start a server process (returns at once; see `wait_ready`)."""
    st = settings or ServerSettings()
    if port and port_in_use(port):
        raise ServerError(f"{name}: port {port} on 127.0.0.1 is already in use; pick another")
    st.check(name)
    port = port or free_port()
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}-{port}.log"
    if st.engine == "transformers":
        cmd = _torch_cmd(model_path, alias, port, st)
    else:
        cmd = _llama_cmd(model_path, alias, port, st)
    srv = LocalServer(
        name, model_path, alias, port, st.n_threads, st.n_ctx, log_path, engine=st.engine
    )
    with log_path.open("wb") as log:
        srv.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=server_env(),
        )
    return srv


async def wait_ready(srv: LocalServer, timeout: float = 180.0) -> None:
    """Poll `/v1/models` until it answers; fail fast, naming the log, if the process exits."""
    assert srv.proc is not None
    deadline = time.monotonic() + timeout
    async with open_session() as s:
        while True:
            code = srv.proc.poll()
            if code is not None:
                raise ServerError(
                    f"{srv.name}: {srv.engine} server exited with code {code} before it was ready; "
                    f"log {srv.log_path}:\n{srv.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with s.get(srv.url + "/models", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                stop(srv)
                raise ServerError(
                    f"{srv.name}: not ready after {timeout:.0f}s; log {srv.log_path}:\n"
                    f"{srv.log_tail()}"
                )
            await asyncio.sleep(0.2)


def answers(url: str, timeout: float = 3.0) -> str:
    """Whether the server at `url` (its base URL, `/v1`) answers its listing `GET /models`: "yes",
    "HTTP <status>", or "no (<the error's type>)" — what `bakeoff local status` shows."""
    try:
        with urllib.request.urlopen(url + "/models", timeout=timeout) as r:
            return "yes" if r.status == 200 else f"HTTP {r.status}"
    except OSError as e:
        return f"no ({type(e).__name__})"


def stop(srv: LocalServer, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    p = srv.proc
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.wait()
