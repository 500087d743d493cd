"""Bootstrap of a sandboxed Python process: lower the process limit, install the audit hook, then
run the program — or, in `calls` mode, load it as a module and call its function on each input.

Run as `python -I -S -B _boot.py IN_DIR WORK_DIR`; IN_DIR holds `config.json`, `program.py` and, in
`calls` mode, `inputs.json` (argument lists only: the expected values never enter the sandbox).
Runs before any untrusted code; everything it needs is imported before the hook goes in.

The audit hook is NOT the security boundary (one line of the program can switch it off; bubblewrap is
the boundary): it exists to end, with a named reason, a program doing what a solution never needs —
exit code 97 and one line `BAKEOFF-SANDBOX-VIOLATION: <event> <detail>` on stderr.

In `calls` mode the program's own stdout is sent to stderr, and this file writes one line
`BAKEOFF-RETURNS <json>` to the original stdout: each call's return value in a tagged encoding (or
the exception it raised). The program can write that line too: it is read as the program's answers,
never as a verdict — the parent compares the values with expected values it never sent.
"""

import json
import os
import resource
import sys
import sysconfig
import types

_VIOLATION = 97
_IN = os.path.realpath(sys.argv[1])
_BOX = os.path.realpath(sys.argv[2])
with open(os.path.join(_IN, "config.json"), encoding="utf-8") as _fh:
    _CONFIG = json.load(_fh)
_READ_ROOTS = tuple(
    {
        os.path.realpath(p)
        for p in (
            sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["platstdlib"],
            os.path.dirname(os.__file__),
            os.path.dirname(os.path.realpath(__file__)),
            _IN,
        )
    }
)
_READ_FILES = ("/dev/null", "/dev/urandom", "/dev/zero")
_WRITE_OPEN_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_MAX_WRITTEN_FILES = 64
_RETURNS = "BAKEOFF-RETURNS "

_BLOCKED_EVENTS = {
    "os.system",
    "os.exec",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.spawn",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "subprocess.Popen",
    "pty.spawn",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.cdata",
    "ctypes.call_function",
    "mmap.__new__",
    "os.setuid",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.remote_exec",
    "webbrowser.open",
    "urllib.Request",
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
    "sqlite3.connect",
}
_BLOCKED_IMPORTS = ("ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "mmap")
_PATH_WRITE_EVENTS = {
    "os.remove": 0,
    "os.rmdir": 0,
    "os.mkdir": 0,
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "os.chmod": 0,
    "os.chown": 0,
    "os.truncate": 0,
    "os.utime": 0,
    "shutil.rmtree": 0,
    "shutil.copyfile": 1,
    "shutil.move": 1,
}
_PATH_READ_EVENTS = {"os.listdir": 0, "os.scandir": 0, "os.chdir": 0, "glob.glob": 0}

_state = {"busy": False, "written": 0}


def _die(event, detail):
    try:
        os.write(2, f"\nBAKEOFF-SANDBOX-VIOLATION: {event} {detail}\n".encode(errors="replace"))
    finally:
        os._exit(_VIOLATION)


def _resolve(p):
    if isinstance(p, int) or p is None:
        return None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return os.path.realpath(os.fspath(p))


def _inside(path, roots):
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def _readable(path):
    return path in _READ_FILES or _inside(path, (_BOX, *_READ_ROOTS))


def _hook(event, args):
    if _state["busy"]:
        return
    _state["busy"] = True
    try:
        _check(event, args)
    finally:
        _state["busy"] = False


def _check(event, args):
    if event in _BLOCKED_EVENTS or event.startswith("socket."):
        _die(event, "is not allowed in the sandbox")
    if event == "import":
        name = str(args[0])
        if name.split(".")[0] in _BLOCKED_IMPORTS:
            _die(event, f"of {name} is not allowed in the sandbox")
        return
    if event == "open":
        _check_open(event, args)
        return
    if event in _PATH_WRITE_EVENTS:
        idx = _PATH_WRITE_EVENTS[event]
        for i in idx if isinstance(idx, tuple) else (idx,):
            if i < len(args):
                path = _resolve(args[i])
                if path is not None and not _inside(path, (_BOX,)):
                    _die(event, f"outside the sandbox dir: {path}")
        return
    if event in _PATH_READ_EVENTS:
        path = _resolve(args[0] if args else ".")
        if path is not None and not _readable(path):
            _die(event, f"outside the sandbox dir: {path}")


def _check_open(event, args):
    path = _resolve(args[0])
    if path is None:
        return
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
        (flags or 0) & _WRITE_OPEN_FLAGS
    )
    if writing:
        if not _inside(path, (_BOX,)):
            _die(event, f"for writing outside the sandbox dir: {path}")
        _state["written"] += 1
        if _state["written"] > _MAX_WRITTEN_FILES:
            _die(event, f"more than {_MAX_WRITTEN_FILES} files opened for writing")
    elif not _readable(path):
        _die(event, f"outside the sandbox dir: {path}")


def _encode(v, depth=0):
    """A JSON-able tagged form that keeps the types `==` cares about (tuple vs list, float, set,
    bytes); a value of any other type is opaque (it equals nothing)."""
    if depth > 60:
        return {"t": "opaque", "v": "nested too deeply"}
    if v is None or type(v) in (bool, int, str):
        return v
    d = depth + 1
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, float):
        return {"t": "float", "v": repr(float(v))}
    if isinstance(v, int):
        return int(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, list):
        return [_encode(x, d) for x in v]
    if isinstance(v, tuple):
        return {"t": "tuple", "v": [_encode(x, d) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[_encode(k, d), _encode(x, d)] for k, x in v.items()]}
    if isinstance(v, (set, frozenset)):
        return {"t": "set", "v": [_encode(x, d) for x in v]}
    if isinstance(v, (bytes, bytearray)):
        return {"t": "bytes", "v": bytes(v).hex()}
    return {"t": "opaque", "v": f"{type(v).__name__}: {repr(v)[:200]}"}


def _call_each(ns, func, inputs):
    out = []
    fn = ns.get(func)
    for args in inputs:
        if not callable(fn):
            out.append({"raised": "NameError"})  # as calling the undefined name would
            continue
        try:
            out.append({"value": _encode(fn(*args))})
        except Exception as e:  # the exception the program raised is its answer for this input
            out.append({"raised": type(e).__name__})
    return out


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main():
    os.chdir(_BOX)
    for name, value in _CONFIG.get("rlimits", {}).items():  # soft = hard: none can be raised
        resource.setrlimit(getattr(resource, name), (value, value))
    program = os.path.join(_IN, "program.py")  # its tracebacks' source lines are read from here
    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    calls = _CONFIG.get("mode") == "calls"
    inputs = None
    if calls:
        with open(os.path.join(_IN, "inputs.json"), encoding="utf-8") as fh:
            inputs = json.load(fh)
        result_fd = os.dup(1)
        os.dup2(2, 1)  # the program's prints go to stderr
    code = compile(source, program, "exec")
    sys.addaudithook(_hook)
    sys.argv = ["program.py"]
    if calls:  # a real module (dataclasses and pickle look the module up in sys.modules)
        module = types.ModuleType("solution")
        sys.modules["solution"] = module
        ns = module.__dict__
    else:
        ns = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(code, ns)
    if calls:
        line = _RETURNS + json.dumps(_call_each(ns, _CONFIG["func"], inputs)) + "\n"
        _write_all(result_fd, line.encode("utf-8", "replace"))


main()
