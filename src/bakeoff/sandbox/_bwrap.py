"""The isolation boundary: a bubblewrap (`bwrap`) sandbox, and whether this machine can make one.

Every namespace is unshared (user, mount, pid, net, ipc, uts, cgroup); inside, the program is uid
65534 with no capability and cannot make further user namespaces. Its file system is a read-only
tmpfs root holding only `/usr`, the Python installation (read-only: ours, `sys.base_prefix`, or
when the sandbox's uid cannot reach it, `/usr/bin/python3`; no virtualenv), a fresh
`/proc` of its own pid namespace (the parent is not in it), a minimal `/dev` (read-only but for its
device nodes), the trusted bootstrap files (`/sandbox`, read-only copies made from memory) and a
size-capped tmpfs `/tmp`, its cwd and HOME: the only writable place, gone with the sandbox. No
network but its own loopback, no host file or socket, no environment variable of ours. The program
is pid 1 of its own pid namespace (`--as-pid-1`), a direct child of bwrap's monitor, so its exit
status and CPU time reach us exactly; when it ends, or bakeoff dies (`--die-with-parent`), the
kernel kills every process left in the namespace. A seccomp filter (`_seccomp.py`, `--seccomp`)
denies the system calls that would make the kernel hold memory the address-space limit does not
count (memfds, SysV IPC, TCP buffers); where none is known for the architecture, no sandbox is made.

`BAKEOFF_BWRAP` names the bwrap binary (default: `bwrap` on PATH, else `/usr/bin/bwrap`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bakeoff.sandbox._seccomp import NoFilter, seccomp_program

ENV_VAR = "BAKEOFF_BWRAP"
DEFAULT_BWRAP = "/usr/bin/bwrap"
IN_DIR = "/sandbox"
WORK_DIR = "/tmp"
SANDBOX_UID = 65534

_unisolated = threading.Event()


class SandboxUnavailable(RuntimeError):
    """Model-written code was to run, and no isolated sandbox can be made here."""


def bwrap_path() -> str:
    return os.environ.get(ENV_VAR) or shutil.which("bwrap") or DEFAULT_BWRAP


def base_interpreter() -> str:
    """The base interpreter (not a virtualenv's launcher): the sandbox has the standard library only."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _candidates() -> list[str]:
    """Interpreters to try, in order: ours, then the system's (when run as root, the sandbox is uid
    65534 on the host and may not reach ours, e.g. a pyenv build under /root)."""
    out = [base_interpreter()]
    system = os.path.realpath("/usr/bin/python3")
    if os.path.isfile(system) and system not in out:
        out.append(system)
    return out


def _ro_roots(python: str) -> list[str]:
    """/usr and the interpreter's installation (its prefix: `bin/..`), read-only."""
    roots = ["/usr"]
    prefixes = [os.path.dirname(os.path.dirname(python))]
    if python == base_interpreter():
        prefixes.append(sys.base_prefix)
    for p in prefixes:
        real = os.path.realpath(p)
        if not any(real == r or real.startswith(r + os.sep) for r in roots):
            roots.append(real)
    return roots


def run_as() -> int | None:
    """The uid and gid bwrap is started as (`subprocess` `user=`/`group=`, set in C between fork
    and exec: no Python runs in the child of a threaded process): 65534 when we are root, else
    None (ours). A user namespace alone would leave the sandbox host root (kuid 0): exempt from
    RLIMIT_NPROC, and the owner of root's files — /proc/sys among them."""
    return SANDBOX_UID if os.geteuid() == 0 else None


def no_groups() -> list[int] | None:
    """Supplementary groups to start bwrap with: none when we drop to 65534."""
    return [] if run_as() is not None else None


def bwrap_argv(
    files: dict[str, int],
    argv: list[str],
    *,
    tmp_bytes: int,
    bwrap: str,
    python: str,
    seccomp: int,
) -> list[str]:
    """The bwrap command running `argv` (which starts `python`) in the sandbox; `files` maps a name
    under /sandbox to an open file descriptor whose content becomes that read-only file, `seccomp`
    is a descriptor holding `seccomp_program()` (all must be passed on). Start it as `run_as()`."""
    cmd = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",  # the program is its namespace's init: it ends, everything in it ends
        "--hostname",
        "sandbox",
        "--seccomp",  # no memory outside RLIMIT_AS: memfd, SysV IPC, TCP buffers (_seccomp.py)
        str(seccomp),
    ]
    for root in _ro_roots(python):
        cmd += ["--ro-bind", root, root]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin"):  # merged /usr or not
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    cmd += ["--size", str(tmp_bytes), "--tmpfs", WORK_DIR, "--dir", IN_DIR]
    for name, fd in files.items():
        cmd += ["--ro-bind-data", str(fd), f"{IN_DIR}/{name}"]
    cmd += ["--remount-ro", "/", "--chdir", WORK_DIR, "--clearenv"]
    for k, v in sandbox_env(WORK_DIR).items():
        cmd += ["--setenv", k, v]
    return [*cmd, "--", *argv]


def sandbox_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def memfd(name: str, data: str | bytes) -> int:
    """An anonymous in-memory file holding `data`, positioned at its start."""
    fd = os.memfd_create(name)  # close-on-exec: only a child given it in pass_fds inherits it
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass(frozen=True)
class Setup:
    """How sandboxes are made here (probed once per bwrap binary)."""

    bwrap: str
    python: str | None
    problem: str | None


def _probe(bwrap: str, python: str) -> str | None:
    try:
        filt = memfd("seccomp", seccomp_program())
    except NoFilter as e:
        return str(e)
    fd = memfd("probe", "import json, os; print('ok', os.getuid())\n")
    try:
        argv = [python, "-I", "-S", "-B", f"{IN_DIR}/probe.py"]
        cmd = bwrap_argv(
            {"probe.py": fd}, argv, tmp_bytes=1 << 20, bwrap=bwrap, python=python, seccomp=filt
        )
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=30,
            env={},
            pass_fds=[fd, filt],
            user=run_as(),
            group=run_as(),
            extra_groups=no_groups(),
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"{bwrap} could not be started: {e}"
    finally:
        os.close(fd)
        os.close(filt)
    if r.returncode != 0 or r.stdout.split() != ["ok", str(SANDBOX_UID)]:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return f"{bwrap} cannot make its sandbox here ({why})"
    return None


@cache
def _setup(bwrap: str) -> Setup:
    if not (os.path.isfile(bwrap) and os.access(bwrap, os.X_OK)):
        return Setup(bwrap, None, f"bwrap was not found at {bwrap}")
    problem = None
    for python in _candidates():
        problem = _probe(bwrap, python)
        if problem is None:
            return Setup(bwrap, python, None)
    return Setup(bwrap, None, problem)


def setup() -> Setup:
    return _setup(bwrap_path())


def isolation_problem() -> str | None:
    """Why no isolated sandbox can be made on this machine, or None when it can (cached per bwrap)."""
    return setup().problem


def refusal(problem: str) -> str:
    return (
        "model-written code (the code suite, or a dataset with scorer: code) runs only inside a "
        f"bubblewrap sandbox, and {problem} ({ENV_VAR} names another binary). Install it — "
        "Debian/Ubuntu: `apt-get install bubblewrap` (`make test` does) — or pass --unsafe-code to "
        "`bakeoff run` to run it without isolation (the summary and report then say so)"
    )


def permit_unisolated(on: bool = True) -> None:
    """Allow model-written code to run unisolated (process, rlimits, audit hook only) in this process
    when no sandbox can be made: `bakeoff run --unsafe-code`."""
    if on:
        _unisolated.set()
    else:
        _unisolated.clear()


def unisolated_permitted() -> bool:
    return _unisolated.is_set()


def require_isolation() -> bool:
    """True when the sandbox is available; False when it is not but unisolated runs are permitted;
    raises `SandboxUnavailable` otherwise."""
    problem = isolation_problem()
    if problem is None:
        return True
    if unisolated_permitted():
        return False
    raise SandboxUnavailable(refusal(problem))


BOOT = str(Path(__file__).with_name("_boot.py"))
