"""Bootstrap of a sandboxed Python process: install the audit hook, then run the program.

Run as `python -I -S -B _boot.py SANDBOX_DIR PROGRAM`. Runs before any untrusted code; everything it
needs is imported before the hook goes in. A forbidden action ends the process at once with exit code
97 and one line `BAKEOFF-SANDBOX-VIOLATION: <event> <detail>` on stderr — the program cannot catch it.
"""

import os
import sys
import sysconfig

_VIOLATION = 97
_BOX = os.path.realpath(sys.argv[1])
_PROGRAM = sys.argv[2]
_READ_ROOTS = tuple(
    {
        os.path.realpath(p)
        for p in (
            sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["platstdlib"],
            os.path.dirname(os.__file__),
            os.path.dirname(os.path.realpath(__file__)),
        )
    }
)
_READ_FILES = ("/dev/null", "/dev/urandom", "/dev/zero")
_WRITE_OPEN_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_MAX_WRITTEN_FILES = 64

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


def main():
    os.chdir(_BOX)
    with open(_PROGRAM, encoding="utf-8") as fh:
        source = fh.read()
    code = compile(source, "program.py", "exec")
    sys.addaudithook(_hook)
    sys.argv = ["program.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


main()
