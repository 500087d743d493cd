from __future__ import annotations

import logging

import typer

from bakeoff import __version__
from bakeoff.cli import _audit, _calibrate, _fake, _local, _perf, _run, _store, _suites, _ui

app = typer.Typer(
    name="bakeoff",
    help="Put LLM inference endpoints side by side: fidelity, quality, claims, speed and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
app.command("audit")(_audit.audit)
app.command("calibrate")(_calibrate.calibrate)
app.command("ui")(_ui.ui)
app.command("report")(_ui.report)
app.command("arena")(_ui.arena)
app.command("runs")(_store.runs)
app.command("show")(_store.show)
app.command("export")(_store.export)
app.add_typer(_suites.app, name="suites")
app.command("fake-server")(_fake.fake_server)
app.add_typer(_local.app, name="local")


def main() -> None:
    from bakeoff.cli._common import err
    from bakeoff.store import StoreError

    try:
        app()
    except StoreError as e:  # the database cannot be opened or written: say so, no traceback
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise SystemExit(2) from None
