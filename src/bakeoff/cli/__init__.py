"""The `bakeoff` command line. One module per command group; this one only assembles them."""

import signal
import sys


def _interrupted_early(signum: int, frame: object) -> None:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


# Ctrl-C or SIGTERM while the CLI is still being imported (~0.5 s): a clean exit, not a
# traceback; `main` then handles both as Ctrl-C. Not a signal our parent set to be ignored.
_EARLY = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
for _sig, _default in _EARLY.items():
    if signal.getsignal(_sig) is _default:
        signal.signal(_sig, _interrupted_early)

from bakeoff.cli._app import app, main  # noqa: E402

__all__ = ["app", "main"]
