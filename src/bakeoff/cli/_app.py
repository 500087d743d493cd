from __future__ import annotations

import logging
import signal
import sys

import typer

from bakeoff._version import __version__
from bakeoff.cli import (
    _audit,
    _calibrate,
    _fake,
    _interrupted_early,
    _lineup,
    _local,
    _perf,
    _run,
    _store,
    _suites,
    _ui,
    _watch,
)

app = typer.Typer(
    name="bakeoff",
    help="Put LLM inference endpoints side by side: fidelity, quality, claims, speed and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: a docstring's lines join into paragraphs, <run> stays
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bakeoff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Log debug details to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.command("run")(_run.run)
app.command("perf")(_perf.perf)
app.command("probe")(_perf.probe)
app.add_typer(_audit.app, name="audit")
app.command("calibrate")(_calibrate.calibrate)
app.add_typer(_watch.app, name="watch")
app.command("ui")(_ui.ui)
app.command("report")(_ui.report)
app.command("arena")(_ui.arena)
app.command("runs")(_store.runs)
app.command("show")(_store.show)
app.command("export")(_store.export)
app.command("compare")(_store.compare)
app.add_typer(_suites.app, name="suites")
app.command("fake-server")(_fake.fake_server)
app.add_typer(_local.app, name="local")
app.add_typer(_lineup.app, name="lineup")
app.command("providers")(_lineup.providers)


OPTIONAL_VALUES = {("perf", "--ray"): "auto"}
"""Options whose value may be left out (click has no such option): the value they then take."""


def _optional_values(argv: list[str]) -> list[str]:
    """`bakeoff perf --ray` alone (last, or before another option) means `--ray auto`."""
    # the command: the first word past the root's own flags (--debug)
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is None:
        return argv
    out = list(argv)
    for (command, option), value in OPTIONAL_VALUES.items():
        if out[at] != command:
            continue
        for i in range(len(out) - 1, at, -1):
            if out[i] == option and (i + 1 == len(out) or out[i + 1].startswith("-")):
                out.insert(i + 1, value)
    return out


INTERRUPTED = "interrupted (what finished before is stored)\n"


def main() -> None:
    from rich.markup import escape

    from bakeoff.cli._common import err
    from bakeoff.store import StoreError

    try:
        # SIGTERM is handled as Ctrl-C everywhere (the same clean message, work stored, exit
        # 130); not a signal our parent set to be ignored
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) in (signal.SIG_DFL, _interrupted_early):
                signal.signal(sig, signal.default_int_handler)
        sys.argv[1:] = _optional_values(sys.argv[1:])
        app()
    except SystemExit as e:
        # typer turns a Ctrl-C (or SIGTERM) that no command handled into a silent exit 130
        ctx = e.__context__
        if e.code == 130 and ctx is not None and isinstance(ctx.__cause__, KeyboardInterrupt):
            sys.stderr.write(INTERRUPTED)
        raise
    except KeyboardInterrupt:
        # one that landed outside click's own handling: while typer builds the command tree
        # (before click runs), or while it handles another exit
        sys.stderr.write(INTERRUPTED)
        raise SystemExit(130) from None
    except StoreError as e:  # the database cannot be opened or written: say so, no traceback
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise SystemExit(2) from None
    finally:
        # the command is over and its work stored: Python resets its handlers while it shuts
        # down, and a SIGTERM then would turn a finished command's exit status into a kill
        if signal.getsignal(signal.SIGTERM) is signal.default_int_handler:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
