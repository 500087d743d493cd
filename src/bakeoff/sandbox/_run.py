"""Run untrusted Python (model-written code) in a contained child process.

Layers, each a backstop for the others:
- a separate process in its own session (the whole group is killed at the end), with a clean
  environment (no variable of ours, so no secret), `-I -S -B`, a fresh temp dir as cwd and HOME;
- resource limits: CPU seconds, address space, file size, open files, processes, no core dumps;
- wall-clock timeout and an output cap enforced by this process (the child is killed past either);
- an audit hook installed before the program runs (`_boot.py`): no sockets, subprocesses, forks,
  signals, ctypes/mmap, writes outside the temp dir, reads outside the temp dir and the standard
  library; a violation ends the child at once with a named reason;
- where the kernel allows unprivileged user namespaces, a network namespace with no interface up
  (`unshare -rn`), so not even a socket made by other means can reach anything.

It contains harmful programs; it does not make a grader tamper-proof against a program written to fake
its own test results (it runs in the same interpreter as the tests).
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

_BOOT = str(Path(__file__).with_name("_boot.py"))
VIOLATION_EXIT = 97
_MARK = "BAKEOFF-SANDBOX-VIOLATION:"


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512
    output_bytes: int = 1_000_000
    file_mb: int = 16
    open_files: int = 64
    processes: int = 16


@dataclass
class SandboxResult:
    ok: bool
    """Exited with status 0 within every limit."""
    reason: str
    """`ok`, `error` (non-zero exit), `timeout`, `cpu_time`, `memory`, `output_limit`,
    `forbidden` (an action the sandbox refuses), or `killed`."""
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    detail: str = ""
    isolation: list[str] = field(default_factory=list)


@cache
def _netns_available() -> bool:
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        r = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10, env={})
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def isolation_layers() -> list[str]:
    layers = ["process", "clean-env", "rlimits", "audit-hook", "wall-timeout", "output-cap"]
    if _netns_available():
        layers.append("netns")
    return layers


def _preexec(limits: Limits) -> Callable[[], None]:
    def set_limits() -> None:
        soft_cpu = max(1, int(limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, soft_cpu + 1))
        mem = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fsize = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(ValueError, OSError):
            # per real user: effective for unprivileged users (root is exempt; the hook still holds)
            used = len([p for p in os.listdir("/proc") if p.isdigit()])
            resource.setrlimit(resource.RLIMIT_NPROC, (used + limits.processes,) * 2)

    return set_limits


def run_python(source: str, limits: Limits | None = None) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and report how it ended."""
    limits = limits or Limits()
    box = tempfile.mkdtemp(prefix="bakeoff-sandbox-")
    try:
        program = os.path.join(box, "program.py")
        with open(program, "w", encoding="utf-8") as fh:
            fh.write(source)
        cmd = [sys.executable, "-I", "-S", "-B", _BOOT, box, program]
        layers = isolation_layers()
        if "netns" in layers:
            cmd = [shutil.which("unshare") or "unshare", "-rn", *cmd]
        env = {"PATH": "/usr/bin:/bin", "HOME": box, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        return _communicate(cmd, box, env, limits, layers)
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _communicate(
    cmd: list[str], box: str, env: dict[str, str], limits: Limits, layers: list[str]
) -> SandboxResult:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=box,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_preexec(limits),
        close_fds=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = t0 + limits.wall_s
    stop_reason = None
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            stop_reason = "timeout"
            break
        for key, _ in sel.select(timeout=min(left, 0.5)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buf: bytearray = key.data
            buf.extend(chunk)
            if len(out) + len(err) > limits.output_bytes:
                stop_reason = "output_limit"
                break
        if stop_reason:
            break
    sel.close()
    if stop_reason:
        _kill_group(proc)
    else:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop_reason = "timeout"
            _kill_group(proc)
    _kill_group(proc)  # anything the program left behind in its session
    proc.stdout.close()
    proc.stderr.close()
    wall = time.monotonic() - t0
    stdout = out[: limits.output_bytes].decode("utf-8", "replace")
    stderr = err[: limits.output_bytes].decode("utf-8", "replace")
    rc = proc.returncode
    reason, detail = _classify(rc, stderr, stop_reason, limits)
    return SandboxResult(
        ok=reason == "ok",
        reason=reason,
        returncode=rc,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        detail=detail,
        isolation=layers,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _classify(
    rc: int | None, stderr: str, stop_reason: str | None, limits: Limits
) -> tuple[str, str]:
    if stop_reason == "timeout":
        return "timeout", f"wall time over {limits.wall_s:g} s"
    if stop_reason == "output_limit":
        return "output_limit", f"output over {limits.output_bytes} bytes"
    if rc == VIOLATION_EXIT and _MARK in stderr:
        line = stderr[stderr.rindex(_MARK) + len(_MARK) :].strip().splitlines()[0]
        return "forbidden", line
    if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and "MemoryError" not in stderr):
        return "cpu_time", f"CPU time over {limits.cpu_s} s"
    if rc == -signal.SIGXFSZ:
        return "output_limit", f"a file over {limits.file_mb} MB"
    if "MemoryError" in stderr:
        return "memory", f"memory over {limits.memory_mb} MB"
    if rc == 0:
        return "ok", ""
    if rc is not None and rc < 0:
        return "killed", f"signal {signal.Signals(-rc).name}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    return "error", last[:300]
