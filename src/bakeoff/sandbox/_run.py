"""Run untrusted Python (model-written code) in a sandbox, and say how it ended.

The boundary is bubblewrap (`_bwrap.py`): namespaces, a read-only minimal root, a private tmpfs, no
network, nothing of the parent's, and a seccomp filter keeping memory inside RLIMIT_AS. Around it,
as before: resource limits (CPU seconds, address space, file size, open files, processes, no core
dumps) inherited from this process, and a wall timeout and output cap enforced here (the whole
sandbox is killed past either). Inside, the audit hook of `_boot.py` only names forbidden actions
early; it is not relied on.

Where bwrap is missing or cannot make its namespaces, nothing runs (`SandboxUnavailable`) unless
`permit_unisolated()` was called (`bakeoff run --unsafe-code`): then the program runs as a plain
child process with the limits, a clean environment, a temp dir and the audit hook, and the result
says `isolated=False`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from bakeoff.sandbox._bwrap import (
    BOOT,
    IN_DIR,
    WORK_DIR,
    base_interpreter,
    bwrap_argv,
    isolation_problem,
    memfd,
    no_groups,
    require_isolation,
    run_as,
    sandbox_env,
    setup,
)
from bakeoff.sandbox._returns import Returned, parse_returns
from bakeoff.sandbox._seccomp import seccomp_program

VIOLATION_EXIT = 97
_MARK = "BAKEOFF-SANDBOX-VIOLATION:"
_PROC_LIMIT = "Resource temporarily unavailable"  # fork's EAGAIN at RLIMIT_NPROC


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    """Per process (RLIMIT_CPU, soft = hard): SIGKILL at this many CPU seconds."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS)."""
    output_bytes: int = 1_000_000
    file_mb: int = 16
    tmp_mb: int = 64
    """Size of the sandbox's writable tmpfs (its cwd and HOME)."""
    open_files: int = 64
    processes: int = 8
    """Processes and threads in the sandbox, its init included (RLIMIT_NPROC in its user
    namespace); at most processes x memory_mb of memory in all, plus the tmpfs and the kernel's
    pipe and Unix-socket buffers (the seccomp filter of `_seccomp.py` denies the rest)."""


@dataclass
class SandboxResult:
    ok: bool
    """Exited with status 0 within every limit."""
    reason: str
    """`ok`, `error` (non-zero exit), `timeout` (wall clock: killed by bakeoff), `cpu_time`
    (RLIMIT_CPU), `memory`, `processes` (the process limit), `output_limit` (stdout/stderr, a file
    or the temp dir over its cap), `forbidden` (the audit hook named an action), or `killed` (a
    signal bakeoff did not send)."""
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    detail: str = ""
    isolation: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU time of the program and every process it started."""
    isolated: bool = True
    """Ran inside bubblewrap (False only under `permit_unisolated()`)."""


@dataclass
class FunctionRun:
    """A program loaded as a module and its function called on each input (`call_function`)."""

    result: SandboxResult
    returns: list[Returned] | None
    """One answer per input, or None when the program reported none (see `result.reason`)."""


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
    """The layers a program run now would get."""
    common = ["rlimits", "wall-timeout", "output-cap", "audit-hook"]
    if isolation_problem() is None:
        ns = "namespaces:user,mount,pid,net,ipc,uts,cgroup"
        return ["bwrap", ns, "ro-root", "seccomp", *common]
    return ["UNISOLATED", "process", "clean-env", *common] + (
        ["netns"] if _netns_available() else []
    )


def run_python(source: str, limits: Limits | None = None) -> SandboxResult:
    """Run `source` as a Python program (`__main__`) in the sandbox and report how it ended."""
    return _run({"program.py": source}, {"mode": "program"}, limits or Limits())


def call_function(
    source: str, func: str, inputs: list[list[Any]], limits: Limits | None = None
) -> FunctionRun:
    """Load `source` as a module in the sandbox, call `func(*args)` for each argument list in
    `inputs` (one process for all) and return the answers. Only the inputs enter the sandbox:
    judging the answers is the caller's job, outside it."""
    files = {"program.py": source, "inputs.json": json.dumps(inputs)}
    res = _run(files, {"mode": "calls", "func": func}, limits or Limits())
    return FunctionRun(result=res, returns=parse_returns(res.stdout, len(inputs)))


@cache
def _boot_source() -> str:
    return Path(BOOT).read_text(encoding="utf-8")


def _run(files: dict[str, str], config: dict[str, Any], limits: Limits) -> SandboxResult:
    if require_isolation():
        return _run_bwrap(files, config, limits)
    return _run_unisolated(files, config, limits)


def _run_bwrap(files: dict[str, str], config: dict[str, Any], limits: Limits) -> SandboxResult:
    # RLIMIT_NPROC counts in the sandbox's own user namespace: this program and what it starts
    config = {**config, "rlimits": rlimits(limits, limits.processes)}
    texts = {**files, "config.json": json.dumps(config), "_boot.py": _boot_source()}
    fds: dict[str, int] = {}
    filt = memfd("seccomp", seccomp_program())
    try:
        for name, text in texts.items():
            fds[name] = memfd(name, text)
        how = setup()
        assert how.python is not None
        argv = [how.python, "-I", "-S", "-B", f"{IN_DIR}/_boot.py", IN_DIR, WORK_DIR]
        tmp = limits.tmp_mb * 1024 * 1024
        cmd = bwrap_argv(fds, argv, tmp_bytes=tmp, bwrap=how.bwrap, python=how.python, seccomp=filt)
        env = {"PATH": "/usr/bin:/bin"}  # bwrap's own environment: nothing of ours
        return _communicate(cmd, "/", env, limits, [*fds.values(), filt], in_bwrap=True)
    finally:
        for fd in [*fds.values(), filt]:
            os.close(fd)


def _run_unisolated(files: dict[str, str], config: dict[str, Any], limits: Limits) -> SandboxResult:
    box = tempfile.mkdtemp(prefix="bakeoff-sandbox-")
    try:
        in_dir, work = os.path.join(box, "in"), os.path.join(box, "work")
        os.mkdir(in_dir)
        os.mkdir(work)
        # per real user outside a sandbox: whatever that user runs now, plus the program's own
        used = len([p for p in os.listdir("/proc") if p.isdigit()])
        config = {**config, "rlimits": rlimits(limits, used + limits.processes)}
        for name, text in {**files, "config.json": json.dumps(config)}.items():
            Path(in_dir, name).write_text(text, encoding="utf-8")
        cmd = [base_interpreter(), "-I", "-S", "-B", BOOT, in_dir, work]
        if _netns_available():
            cmd = [shutil.which("unshare") or "unshare", "-rn", *cmd]
        res = _communicate(cmd, work, sandbox_env(work), limits, (), in_bwrap=False)
        res.isolated = False
        return res
    finally:
        shutil.rmtree(box, ignore_errors=True)


def rlimits(limits: Limits, nproc: int) -> dict[str, int]:
    """The resource limits `_boot.py` sets on itself (soft = hard, so no program can raise them)
    before any untrusted code runs; they bind the program and every process it starts. Set there
    rather than between fork and exec here: this runs in threads, and no Python may run in a
    forked child of a threaded process. CPU soft = hard: SIGKILL at the limit (the sandbox's init
    ignores a default SIGXCPU)."""
    mb = 1024 * 1024
    return {
        "RLIMIT_CPU": max(1, int(limits.cpu_s)),
        "RLIMIT_AS": limits.memory_mb * mb,
        "RLIMIT_FSIZE": limits.file_mb * mb,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
        "RLIMIT_NPROC": nproc,
    }


def _communicate(
    cmd: list[str],
    cwd: str,
    env: dict[str, str],
    limits: Limits,
    pass_fds: Iterable[int],
    *,
    in_bwrap: bool,
) -> SandboxResult:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        user=run_as() if in_bwrap else None,
        group=run_as() if in_bwrap else None,
        extra_groups=no_groups() if in_bwrap else None,
        close_fds=True,
        pass_fds=tuple(pass_fds),
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = t0 + limits.wall_s
    out, err, stop_reason = _read_capped(proc, deadline, limits.output_bytes)
    usage = None
    if stop_reason is None:
        usage = _reap(proc, max(0.1, deadline - time.monotonic()))
        if usage is None:
            stop_reason = "timeout"
    if usage is None:
        _kill_group(proc)
        usage = _reap(proc, 10.0)
    _kill_group(proc)  # anything the program left behind in its session
    proc.stdout.close()
    proc.stderr.close()
    wall = time.monotonic() - t0
    stdout = out[: limits.output_bytes].decode("utf-8", "replace")
    stderr = err[: limits.output_bytes].decode("utf-8", "replace")
    rc = proc.returncode
    cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
    reason, detail = _classify(rc, _signal_of(rc, in_bwrap), cpu, stderr, stop_reason, limits)
    return SandboxResult(
        ok=reason == "ok",
        reason=reason,
        returncode=rc,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        detail=detail,
        isolation=isolation_layers(),
        cpu_s=round(cpu, 3),
    )


def _read_capped(
    proc: subprocess.Popen[bytes], deadline: float, cap: int
) -> tuple[bytearray, bytearray, str | None]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    stop_reason = None
    try:
        while sel.get_map() and stop_reason is None:
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
                if len(out) + len(err) > cap:
                    stop_reason = "output_limit"
                    break
    finally:
        sel.close()
    return out, err, stop_reason


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> Any:
    """Wait for the child up to `timeout` s; its rusage (CPU of it and every descendant it
    reaped — in bwrap, the whole sandbox), or None if it is still running."""
    end = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() >= end:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signal_of(rc: int | None, in_bwrap: bool) -> int | None:
    """The signal that ended the program: bwrap exits with 128 + the signal of its command."""
    if rc is None:
        return None
    if rc < 0:
        return -rc
    if in_bwrap and 128 < rc < 128 + signal.NSIG:
        return rc - 128
    return None


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _classify(
    rc: int | None,
    sig: int | None,
    cpu: float,
    stderr: str,
    stop_reason: str | None,
    limits: Limits,
) -> tuple[str, str]:
    if stop_reason == "timeout":
        hit = "; it hit the process limit" if _PROC_LIMIT in stderr else ""
        return (
            "timeout",
            f"wall time over {limits.wall_s:g} s (killed by bakeoff; CPU {cpu:.1f} s{hit})",
        )
    if stop_reason == "output_limit":
        return "output_limit", f"output over {limits.output_bytes} bytes (killed by bakeoff)"
    if rc == VIOLATION_EXIT and _MARK in stderr:
        line = stderr[stderr.rindex(_MARK) + len(_MARK) :].strip().splitlines()[0]
        return "forbidden", line
    if rc == 0:
        return "ok", ""
    # RLIMIT_CPU's SIGKILL: the CPU measured here (the sandbox's rusage) came to 4.8 s of a 5 s
    # limit once, under load: a SIGKILL near the limit is the limit's
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= 0.8 * limits.cpu_s):
        return "cpu_time", (
            f"CPU time {cpu:.1f} s reached the {limits.cpu_s} s limit ({_signame(sig)} from RLIMIT_CPU)"
        )
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory", f"memory over {limits.memory_mb} MB (address-space limit)"
    if sig == signal.SIGXFSZ or "File too large" in stderr:
        return "output_limit", f"a file over {limits.file_mb} MB"
    if "No space left on device" in stderr:
        return "output_limit", f"the temp dir over {limits.tmp_mb} MB"
    if _PROC_LIMIT in stderr or "can't start new thread" in stderr:
        return "processes", f"the process limit ({limits.processes}) was reached"
    if sig is not None:
        return "killed", f"{_signame(sig)}, not sent by bakeoff (CPU {cpu:.1f} s)"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    return "error", last[:300]
