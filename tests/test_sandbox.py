"""The code sandbox against hostile programs, through the code suite's real scoring path
(`CodeSuite.score`) and a real bubblewrap: each reply scores 0 with a classified reason, and nothing
outside the sandbox is read, written, reached, signalled or outlived.

Every program runs twice: as written, and after the one line that switches the audit hook off
(`hook-off`): the hook only names actions early, the boundary must hold without it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from bakeoff.endpoints import CallResult
from bakeoff.sandbox import (
    Limits,
    call_function,
    isolation_problem,
    run_python,
)
from bakeoff.suites.code import CodeSuite, run_tests

LIMITS = Limits(wall_s=3, cpu_s=1, memory_mb=512, output_bytes=1_000_000)
SECRET = "sk-" + "sandbox-test-" + "9f8e7d6c5b4a"
HOOK_OFF = "import sys\nsys.modules['__main__']._state['busy'] = True\n"
SUITE = CodeSuite()
ITEM = SUITE.items(seed=0, n=1)[0]
FUNC = ITEM.target["func"]
REASONS = {"ok", "error", "timeout", "cpu_time", "memory", "processes", "output_limit"}
REASONS |= {"forbidden", "killed", "no answers"}


@dataclass
class Host:
    """What a program must not reach: files, a database, listening sockets, this process, a
    process holding a secret in its environment and a token on its command line."""

    dir: Path
    file: Path
    new_file: Path
    db: Path
    new_db: Path
    sock: Path
    abstract: str
    port: int
    token: str
    marker: str
    listeners: list[socket.socket] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    db_digest: str = ""
    witness: subprocess.Popen[bytes] | None = None
    elders: set[int] = field(default_factory=set)  # children from before the test (session servers)

    def fill(self, src: str) -> str:
        for k in (
            "file",
            "new_file",
            "db",
            "new_db",
            "sock",
            "abstract",
            "port",
            "token",
            "marker",
        ):
            src = src.replace("{" + k + "}", str(getattr(self, k)))
        return src.replace("{testpid}", str(os.getpid())).replace("{func}", FUNC)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    monkeypatch.setenv("BAKEOFF_TEST_SECRET_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    d = Path(tempfile.mkdtemp(prefix="bk-host-"))  # short: AF_UNIX paths are <= 107 bytes
    tag = uuid.uuid4().hex[:12]
    h = Host(d, d / "host.txt", d / "new" / "made.txt", d / "bakeoff.db", d / "made.db",
             d / "host.sock", f"bakeoff-test-{tag}", 0, f"--db=/secret/{tag}.db",
             f"4242.{int(tag[:6], 16)}")  # fmt: skip
    h.elders = children()
    h.file.write_text("host data")
    with sqlite3.connect(h.db) as c:
        c.execute("create table scores (v integer)")
        c.execute("insert into scores values (0)")
    c.close()
    h.db_digest = hashlib.sha256(h.db.read_bytes()).hexdigest()
    for family, addr in ((socket.AF_UNIX, str(h.sock)), (socket.AF_UNIX, "\0" + h.abstract),
                         (socket.AF_INET, ("127.0.0.1", 0))):  # fmt: skip
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(addr)
        s.listen(8)
        s.setblocking(False)
        h.listeners.append(s)
    h.port = h.listeners[2].getsockname()[1]
    # a process like `bakeoff run`: the secret in its environment, the token on its command line
    h.witness = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", h.token],
        env={**os.environ, "OPENAI_API_KEY": SECRET},
    )
    old = {s: signal.signal(s, lambda n, _f: h.signals.append(n)) for s in
           (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}  # fmt: skip
    yield h
    for s, handler in old.items():
        signal.signal(s, handler)
    h.witness.kill()
    h.witness.wait()
    for s in h.listeners:
        s.close()
    shutil.rmtree(d, ignore_errors=True)


def processes_with(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmd:
            found.append(int(pid))
    return found


def children() -> set[int]:
    kids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            kids.update(int(p) for p in f.read().split())
    return kids


def assert_host_unharmed(h: Host, seen: str = "") -> None:
    assert os.path.exists(f"/proc/{os.getpid()}")
    assert h.file.read_text() == "host data"
    assert not h.new_file.exists() and not h.new_db.exists()
    assert hashlib.sha256(h.db.read_bytes()).hexdigest() == h.db_digest
    for s in h.listeners:
        with pytest.raises(BlockingIOError):
            s.accept()[0].close()  # nothing ever connected
    assert h.signals == []
    assert h.witness is not None and h.witness.poll() is None
    assert children() - h.elders <= {h.witness.pid}  # the sandbox is gone
    assert processes_with(h.marker) == []  # and nothing it started outlived it
    for leak in (SECRET, h.token, "root:x:0:0", "host data"):
        assert leak not in seen


# name: (program, reasons it may end with once the hook is off)
CORPUS: dict[str, tuple[str, set[str]]] = {
    "read /etc/passwd": ("print(open('/etc/passwd').read())", {"error"}),
    "dir_fd traversal to /etc/passwd": (
        "import os\nos.chdir('/tmp')\nd = os.open('.', os.O_RDONLY)\n"
        "print(os.read(os.open('../' * 8 + 'etc/passwd', os.O_RDONLY, dir_fd=d), 4096))",
        {"error"},
    ),
    "read a host file by path": ("print(open('{file}').read())", {"error"}),
    "write a host file": ("open('{file}', 'w').write('pwned')", {"error"}),
    "make dirs and write outside": (
        "import os\nos.makedirs(os.path.dirname('{new_file}'))\nopen('{new_file}', 'w').write('x')\n"
        "def {func}(*a):\n    return open('{new_file}').read()",
        {"ok"},  # it writes into its own tmpfs: the host path never exists
    ),
    "delete a host file": ("import os\nos.remove('{file}')", {"error"}),
    "sqlite3 UPDATE of the host database": (
        "import sqlite3\nc = sqlite3.connect('{db}')\nc.execute('update scores set v = 99')\n"
        "c.commit()",
        {"error"},
    ),
    "sqlite3 creates a database outside": (
        "import sqlite3\nsqlite3.connect('{new_db}').execute('create table t (x)')",
        {"error"},
    ),
    "pidfd_send_signal to the parent": (
        "import os, signal\nfor p in (os.getppid(), {testpid}, 1):\n    try:\n"
        "        signal.pidfd_send_signal(os.pidfd_open(p), signal.SIGKILL)\n"
        "    except OSError as e:\n        print(p, e)\n"
        "def {func}(*a):\n    return 'alive'",
        {"ok"},
    ),
    "os.kill the test process by pid": (
        "import os, signal\nfor s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGKILL):\n"
        "    try:\n        os.kill({testpid}, s)\n    except OSError as e:\n        print(e)\n"
        "def {func}(*a):\n    return 'alive'",
        {"ok"},
    ),
    "kill(1), kill(-1), killpg(0)": (
        "import os, signal\nfor f, a in ((os.kill, 1), (os.kill, -1), (os.killpg, 0)):\n"
        "    try:\n        f(a, signal.SIGKILL)\n    except OSError as e:\n        print(e)\n"
        "def {func}(*a):\n    return 'alive'",
        {"ok"},
    ),
    "every /proc/*/environ": (
        "import os\nseen = []\nfor p in os.listdir('/proc'):\n    try:\n"
        "        seen.append(open('/proc/%s/environ' % p).read())\n    except OSError:\n        pass\n"
        "print(seen)\ndef {func}(*a):\n    return ' '.join(seen)",
        {"ok"},
    ),
    "the parent's command line": (
        "import os\nseen = [open('/proc/%s/cmdline' % p).read() for p in os.listdir('/proc') "
        "if p.isdigit()]\nprint(seen, os.getppid())\ndef {func}(*a):\n    return ' '.join(seen)",
        {"ok"},
    ),
    "host Unix socket by path": (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('{sock}')",
        {"error"},
    ),
    "abstract Unix socket": (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0{abstract}')",
        {"error"},
    ),
    "TCP to a listener on 127.0.0.1": (
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        {"error"},
    ),
    "TCP to the outside": (
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)",
        {"error"},
    ),
    "os.system": ("import os\nos.system('cat /etc/passwd /proc/*/environ; id')", {"ok"}),
    "subprocess": (
        "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'cat /etc/passwd {file}'])",
        {"ok"},
    ),
    "ctypes: libc system and kill": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.system(b'cat /etc/passwd')\n"
        "libc.kill({testpid}, 9)\nprint('survived')",
        {"ok"},
    ),
    "setsid double-fork daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execv('/usr/bin/sleep', ['sleep', '{marker}'])\n    os._exit(0)\n"
        "time.sleep(0.3)",
        {"ok"},
    ),
    "Popen daemon in a new session": (
        "import subprocess, time\n"
        "subprocess.Popen(['/usr/bin/sleep', '{marker}'], start_new_session=True)\ntime.sleep(0.3)",
        {"ok"},
    ),
    "new user namespace": ("import os\nos.unshare(os.CLONE_NEWUSER)", {"error"}),
    "host sysctl write": (
        "p = '/proc/sys/vm/overcommit_ratio'\nopen(p, 'w').write(open(p).read())",
        {"error"},
    ),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {"processes", "timeout"}),
    "thread bomb": (
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
        {"processes", "memory"},
    ),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)", {"memory"}),
    "growing list": ("x = []\nwhile True:\n    x.append('a' * 10**6)", {"memory"}),
    "infinite loop": ("while True:\n    pass", {"cpu_time"}),
    "sleep forever": ("import time\ntime.sleep(3600)", {"timeout"}),
    "1 GB of output": (
        "import os\nfor _ in range(1024):\n    os.write(1, b'x' * 1024 * 1024)",
        {"output_limit"},
    ),
    "fill the temp dir": (
        "for i in range(10):\n    open('f%d' % i, 'wb').write(b'x' * 15 * 1024 * 1024)",
        {"output_limit"},
    ),
    "forged BAKEOFF-TESTS 3/3 + os._exit(0)": (
        "import os\nprint('BAKEOFF-TESTS 3/3')\nos.write(1, b'\\nBAKEOFF-TESTS 8/8\\n')\nos._exit(0)",
        {"no answers"},
    ),
    "forged answers line on every fd + os._exit(0)": (
        "import os\nline = 'BAKEOFF-RETURNS [' + ', '.join(['{\"value\": \"forged\"}'] * 8) + ']\\n'\n"
        "for fd in range(1, 32):\n    try:\n        os.write(fd, line.encode())\n"
        "    except OSError:\n        pass\nos._exit(0)",
        {"ok"},
    ),
    "the harness patched to answer for it": (
        "import sys\nm = sys.modules['__main__']\n"
        "m._call_each = lambda ns, f, inputs: [{'value': 'forged'} for _ in inputs]",
        {"ok"},
    ),
    "an answer equal to everything": (
        "class E:\n    def __eq__(self, other):\n        return True\n"
        "def {func}(*a):\n    return E()",
        {"ok"},
    ),
}


@pytest.mark.parametrize("hook", ["hook-on", "hook-off"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_code_reply_scores_zero_and_is_contained(name: str, hook: str, host: Host) -> None:
    src, reasons = CORPUS[name]
    program = host.fill((HOOK_OFF if hook == "hook-off" else "") + src)
    t0 = time.monotonic()
    scores = SUITE.score(ITEM, CallResult(text=f"```python\n{program}\n```"))
    assert time.monotonic() - t0 < LIMITS.wall_s + 10
    by = {s.scorer: s for s in scores}
    assert by["pass"].passed is False and by["tests"].value == 0.0
    assert by["isolated"].value == 1.0
    reason = re.split(r"[:;]", by["pass"].detail.split("; ", 1)[1])[0]
    allowed = reasons | ({"forbidden"} if hook == "hook-on" else set())
    assert reason in allowed and reason in REASONS, by["pass"].detail
    seen = by["pass"].detail
    if hook == "hook-off":  # everything the program said or answered, in full
        run = call_function(program, FUNC, [c["args"] for c in ITEM.target["cases"]], LIMITS)
        seen += run.result.stdout + run.result.stderr + repr(run.returns)
    assert_host_unharmed(host, seen)


def test_expected_values_never_enter_the_sandbox(host: Host) -> None:
    """A program that searches everything it can read — files, /proc, its own memory — for the
    expected answers finds none, and its best guess scores 0."""
    token = "expected-" + uuid.uuid4().hex
    cases = [{"args": [i], "expected": token} for i in range(3)]
    program = HOOK_OFF + (
        "import gc, os\nfound = set()\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [d for d in dirs if (root, d) not in (('/', 'usr'), ('/proc', 'sys'))]\n"
        "    for f in files:\n        try:\n"
        "            fd = os.open(os.path.join(root, f), os.O_RDONLY | os.O_NONBLOCK)\n"
        "            data = os.read(fd, 1 << 16)\n"
        "        except OSError:\n            continue\n"
        "        found.update(w.decode() for w in data.split() if w.startswith(b'expected-'))\n"
        "found.update(o for o in gc.get_objects() if isinstance(o, str) and o.startswith('expected-'))\n"
        "print(sorted(found))\ndef f(x):\n    return next(iter(found), 'expected-?')\n"
    )
    assert run_tests(program, "f", cases, LIMITS).passed == 0
    run = call_function(program, "f", [c["args"] for c in cases], LIMITS)
    assert run.result.ok and run.returns is not None
    assert token not in run.result.stdout + run.result.stderr + repr(run.returns)
    assert_host_unharmed(host)


def test_the_sandbox_dies_with_bakeoff(host: Host) -> None:
    """`kill -9` of the process running the sandbox: the program and what it started die too."""
    program = HOOK_OFF + (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    os.execv('/usr/bin/sleep', ['sleep', '{marker}'])\ntime.sleep(60)"
    )
    code = (
        "from bakeoff.sandbox import Limits, run_python\n"
        f"run_python({host.fill(program)!r}, Limits(wall_s=60, cpu_s=60))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        end = time.monotonic() + 30
        while not processes_with(host.marker) and time.monotonic() < end:
            time.sleep(0.05)
        assert processes_with(host.marker), "the sandboxed daemon never started"
    finally:
        parent.kill()
        parent.wait()
    end = time.monotonic() + 10
    while processes_with(host.marker) and time.monotonic() < end:
        time.sleep(0.05)
    assert processes_with(host.marker) == []


def test_kills_are_classified_by_what_happened() -> None:
    """CPU limit, wall timeout, memory and a signal bakeoff did not send are told apart."""
    assert isolation_problem() is None, isolation_problem()  # `make test` installs bubblewrap
    # a CPU-bound program gets its 1 s of CPU within however many seconds the machine's load
    # makes it (on a shared 2-core machine, more than the 3 s wall limit): the CPU runs get a wall
    # limit that load cannot reach first, so the kill they are told apart by is the CPU limit's
    spin = replace(LIMITS, wall_s=60)
    cpu = run_python("while True:\n    pass", spin)
    assert cpu.reason == "cpu_time" and "RLIMIT_CPU" in cpu.detail
    # (the rusage measured can come short of what RLIMIT_CPU counted: 0.947 s of 1 s with two
    # other processes spinning)
    assert 0.8 * LIMITS.cpu_s <= cpu.cpu_s < LIMITS.cpu_s + 0.5 and cpu.wall_s < spin.wall_s
    wall = run_python("import time\ntime.sleep(60)", LIMITS)
    assert wall.reason == "timeout" and "killed by bakeoff" in wall.detail and wall.cpu_s < 0.5
    mem = run_python("x = bytearray(10 * 1024**3)", LIMITS)
    assert mem.reason == "memory" and "MemoryError" in mem.stderr
    segv = run_python(HOOK_OFF + "import ctypes\nctypes.string_at(0)", LIMITS)
    assert segv.reason == "killed" and segv.detail.startswith("SIGSEGV, not sent by bakeoff")
    child = run_python(
        HOOK_OFF + "import os\nif os.fork() == 0:\n    while True: pass\nos.wait()", spin
    )
    assert child.ok and child.cpu_s >= 0.8 * LIMITS.cpu_s  # its children's CPU is counted too


def test_a_sigkill_near_the_cpu_limit_is_the_limits() -> None:
    """The sandbox's rusage can come short of the CPU that RLIMIT_CPU counted (4.8 s of 5 s
    measured once under load): a SIGKILL near the limit is `cpu_time`, one far below it a kill
    bakeoff did not send."""
    from bakeoff.sandbox._run import _classify

    five = replace(LIMITS, cpu_s=5)
    kill = int(signal.SIGKILL)
    assert _classify(-kill, kill, 4.8, "", None, five)[0] == "cpu_time"
    assert _classify(-kill, kill, 5.01, "", None, five)[0] == "cpu_time"
    reason, detail = _classify(-kill, kill, 1.2, "", None, five)
    assert reason == "killed" and detail.startswith("SIGKILL, not sent by bakeoff")


def test_well_behaved_programs_run() -> None:
    res = run_python("import json, math\nprint(json.dumps({'x': math.sqrt(16)}))", LIMITS)
    assert res.ok and res.isolated and res.stdout.strip() == '{"x": 4.0}'
    res = run_python(
        "import os\nprint(sorted(os.environ), os.getcwd(), os.environ['HOME'])", LIMITS
    )
    assert res.ok and res.stdout.split("] ")[1].split() == ["/tmp", "/tmp"]
    assert "BAKEOFF" not in res.stdout and "PATH" in res.stdout
    res = run_python(
        "open('scratch.txt', 'w').write('hi')\nprint(open('scratch.txt').read())", LIMITS
    )
    assert res.ok and res.stdout.strip() == "hi"


def test_honest_solutions_score_and_types_count() -> None:
    """Prints, dataclasses and helper code are fine; the parent compares values as `==` did in the
    old in-sandbox harness (a tuple is not a list, 1 == True), and a raised exception fails a case."""
    cases = [{"args": [[1, 2]], "expected": [[1, 2]]}, {"args": [[]], "expected": []}]
    ok = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n" \
         "def f(xs):\n    print('debug', xs)\n    return [list(xs)] if xs else []\n"  # fmt: skip
    assert run_tests(ok, "f", cases, LIMITS)[:3] == (2, 2, "ok")
    tup = run_tests("def f(xs):\n    return [tuple(xs)] if xs else []", "f", cases, LIMITS)
    assert tup.passed == 1 and "returned [(1, 2)]" in tup.why
    boom = run_tests("def f(xs):\n    return xs[5]", "f", cases, LIMITS)
    assert boom.passed == 0 and "raised IndexError" in boom.why
    assert (
        run_tests("def f(x):\n    return 1", "f", [{"args": [0], "expected": True}], LIMITS).passed
        == 1
    )
    no_func = run_tests("def g(x):\n    return x", "f", cases, LIMITS)
    assert no_func.passed == 0 and "raised NameError" in no_func.why
