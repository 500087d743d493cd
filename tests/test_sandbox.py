"""The code sandbox against hostile programs: each ends as a failed run with its reason, and the host
(this test process, its files, its environment) is unharmed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bakeoff.sandbox import Limits, run_python
from bakeoff.suites.code import run_tests

LIMITS = Limits(wall_s=4, cpu_s=2, memory_mb=512, output_bytes=1_000_000)
SECRET = "sk-" + "sandbox-test-" + "9f8e7d6c5b4a"


@pytest.fixture(autouse=True)
def secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKEOFF_TEST_SECRET_KEY", SECRET)


HOSTILE: dict[str, tuple[str, set[str]]] = {
    "infinite loop": ("while True:\n    pass", {"cpu_time", "timeout"}),
    "sleep forever": ("import time\ntime.sleep(3600)", {"timeout"}),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {"forbidden"}),
    "multiprocessing bomb": (
        "import multiprocessing as m\nwhile True:\n    m.Process(target=print).start()",
        {"forbidden"},
    ),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)", {"memory"}),
    "growing list": ("x = []\nwhile True:\n    x.append('a' * 10**6)", {"memory", "cpu_time"}),
    "write outside": ("open('{outside}', 'w').write('pwned')", {"forbidden"}),
    "delete outside": ("import os\nos.remove('{outside}')", {"forbidden"}),
    "parent env via /proc": (
        "import os\nprint(open('/proc/%d/environ' % os.getppid()).read())",
        {"forbidden"},
    ),
    "read ~/.ssh": (
        "import os\nprint(os.listdir(os.path.expanduser('~root/.ssh')))",
        {"forbidden"},
    ),
    "read /etc/passwd": ("print(open('/etc/passwd').read())", {"forbidden"}),
    "socket": (
        "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)",
        {"forbidden"},
    ),
    "raw socket object": ("import socket\ns = socket.socket()", {"forbidden"}),
    "subprocess": ("import subprocess\nsubprocess.run(['id'])", {"forbidden"}),
    "os.system": ("import os\nos.system('id')", {"forbidden"}),
    "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", {"forbidden"}),
    "ctypes escape": ("import ctypes\nctypes.CDLL(None).fork()", {"forbidden"}),
    "1 GB of stdout": (
        "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 1024 * 1024)",
        {"output_limit"},
    ),
    "huge file": (
        "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * 1024 * 1024)",
        {"output_limit", "error"},
    ),
    "catch the violation": (
        "try:\n    import socket; socket.socket()\nexcept BaseException:\n    print('escaped')",
        {"forbidden"},
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained(name: str, tmp_path: Path) -> None:
    outside = tmp_path / "host-file.txt"
    outside.write_text("host data")
    src, reasons = HOSTILE[name]
    parent = os.getpid()
    t0 = time.monotonic()
    res = run_python(src.replace("{outside}", str(outside)), LIMITS)
    assert not res.ok
    assert res.reason in reasons, (res.reason, res.detail, res.stderr[-300:])
    assert res.detail or res.reason == "error"
    # the host is unharmed: alive, its file intact, no secret printed, time bounded
    assert os.getpid() == parent
    assert outside.read_text() == "host data"
    assert SECRET not in res.stdout and SECRET not in res.stderr
    assert "escaped" not in res.stdout
    assert time.monotonic() - t0 < LIMITS.wall_s + 5


def test_well_behaved_program_runs() -> None:
    res = run_python("import json, math\nprint(json.dumps({'x': math.sqrt(16)}))", LIMITS)
    assert res.ok and res.reason == "ok" and res.stdout.strip() == '{"x": 4.0}'


def test_environment_is_clean() -> None:
    res = run_python("import os\nprint(sorted(os.environ))", LIMITS)
    assert res.ok
    assert "BAKEOFF_TEST_SECRET_KEY" not in res.stdout and "PATH" in res.stdout


def test_program_may_use_its_own_temp_dir() -> None:
    src = "open('scratch.txt', 'w').write('hi')\nprint(open('scratch.txt').read())"
    res = run_python(src, LIMITS)
    assert res.ok and res.stdout.strip() == "hi"


def test_hostile_solution_is_a_failed_item_with_its_reason() -> None:
    cases = [{"args": [1], "expected": 2}]
    passed, total, why = run_tests(
        "import os\ndef f(x):\n    os.fork()\n    return x + 1", "f", cases
    )
    assert (passed, total) == (0, 1) and why.startswith("forbidden")
    passed, total, why = run_tests(
        "def f(x):\n    while True: pass", "f", cases, Limits(wall_s=3, cpu_s=1)
    )
    assert (passed, total) == (0, 1) and why.split(":")[0] in ("cpu_time", "timeout")
    assert run_tests("def f(x):\n    return x + 1", "f", cases)[:2] == (1, 1)
