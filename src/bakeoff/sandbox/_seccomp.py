"""The sandbox's seccomp filter: no memory outside its address-space limit.

RLIMIT_AS bounds what a process maps, not what the kernel holds for it. Measured on Linux 6.18 from
one sandboxed process at a 64-128 MB limit: 976 MB in memfds (`memfd_create` + `write`, bounded only
by RLIMIT_FSIZE x open files), 1 GB in SysV shared memory (`shmget` + `shmat` + fill + `shmdt`: the
segment outlives its mapping), 61 MB of SysV messages in 4,000 of the namespace's 32,000 queues,
111 MB of TCP buffers over the sandbox's own loopback (64 descriptors). The filter makes these calls
fail with EPERM; plain Python never makes them (multiprocessing's POSIX semaphores and shared memory
live in /dev/shm, read-only in the sandbox). Denied: `memfd_create`, `memfd_secret`, SysV `shmget`,
`shmat`, `msgget` and `semget`, POSIX `mq_open`, `io_uring_setup`, `userfaultfd`, `bpf`,
`perf_event_open`, `inotify_init`/`inotify_init1`, `fanotify_init`, `socket` in any family
but AF_UNIX (whose buffers are bounded by its send buffer per descriptor), and `fcntl`'s
F_SETPIPE_SZ (a pipe keeps 64 KB; at 1 MB each, one process held the kernel's 64 MB per-user
soft limit of pipe buffers with 256 descriptors).

The program is built here, at run time, as classic BPF (`struct sock_filter`, 8 bytes per
instruction) and handed to bubblewrap's `--seccomp FD`, which sets no_new_privs and installs it
just before it executes the program; every process the program starts inherits it. A system call
of another ABI (x86's i386 `int 0x80` or x32 numbers, arm32 on arm64) kills the process: the
numbers below are those of the native ABI only. Other architectures get no filter: the sandbox
refuses to run there (`seccomp_program` raises, `_bwrap` reports it as why no sandbox can be made).
"""

from __future__ import annotations

import platform
import struct

# linux/audit.h
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_BIT = 0x40000000  # x86_64's x32 ABI: the same entry point, numbers with this bit set
AF_UNIX = 1
EPERM = 1

# name: (x86_64, aarch64) from the kernel's syscall tables; None where the ABI has no such call.
# tests/test_sandbox_memory.py checks them against libseccomp's tables where it is installed.
DENIED: dict[str, tuple[int | None, int | None]] = {
    "memfd_create": (319, 279),
    "memfd_secret": (447, 447),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "msgget": (68, 186),
    "semget": (64, 190),
    "mq_open": (240, 180),
    "io_uring_setup": (425, 425),
    "userfaultfd": (323, 282),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "inotify_init": (253, None),
    "inotify_init1": (294, 26),
    "fanotify_init": (300, 262),
}
SOCKET = (41, 198)
"""`socket` is allowed in the AF_UNIX family only (argument 0)."""
FCNTL = (72, 25)
"""`fcntl` is denied F_SETPIPE_SZ (argument 1): a pipe keeps its default 16 pages."""
F_SETPIPE_SZ = 1031

# linux/filter.h, linux/seccomp.h
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # in struct seccomp_data (args' low words: little-endian)


class NoFilter(RuntimeError):
    """No seccomp filter is known for this machine's architecture."""


def arch() -> str:
    return platform.machine()


def seccomp_program(machine: str | None = None) -> bytes:
    """The filter for `machine` (default: this one) as bytes for bwrap's `--seccomp FD`."""
    machine = machine or arch()
    if machine not in AUDIT_ARCH:
        raise NoFilter(
            f"the sandbox's seccomp filter knows x86_64 and aarch64, not {machine} (it would let "
            "memfds and SysV shared memory past the memory limit)"
        )
    col = 0 if machine == "x86_64" else 1
    denied = sorted({nr for nrs in DENIED.values() if (nr := nrs[col]) is not None})
    # (code, jump-if-true label, jump-if-false label, k); labels resolved below
    prog: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _ARCH),
        (_JEQ_K, None, "kill", AUDIT_ARCH[machine]),
        (_LD_W_ABS, None, None, _NR),
    ]
    if machine == "x86_64":
        prog.append((_JGE_K, "kill", None, _X32_BIT))
    prog.append((_JEQ_K, "socket", None, SOCKET[col]))
    prog.append((_JEQ_K, "fcntl", None, FCNTL[col]))
    prog += [(_JEQ_K, "deny", None, nr) for nr in denied]
    prog.append((_RET_K, None, None, RET_ALLOW))
    labels = {"socket": len(prog)}
    prog += [(_LD_W_ABS, None, None, _ARG0), (_JEQ_K, "allow", "deny", AF_UNIX)]
    labels["fcntl"] = len(prog)
    prog += [(_LD_W_ABS, None, None, _ARG1), (_JEQ_K, "deny", "allow", F_SETPIPE_SZ)]
    labels["allow"] = len(prog)
    prog.append((_RET_K, None, None, RET_ALLOW))
    labels["deny"] = len(prog)
    prog.append((_RET_K, None, None, RET_ERRNO | EPERM))
    labels["kill"] = len(prog)
    prog.append((_RET_K, None, None, RET_KILL_PROCESS))
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        out += struct.pack("=HBBI", code, _jump(labels, jt, i), _jump(labels, jf, i), k)
    return bytes(out)


def _jump(labels: dict[str, int], label: str | None, at: int) -> int:
    if label is None:
        return 0
    off = labels[label] - at - 1
    assert 0 <= off < 256, "a BPF jump reaches at most 255 instructions"
    return off
