"""The `bakeoff` command line. One module per command group; this one only assembles them."""

from bakeoff.cli._app import app, main

__all__ = ["app", "main"]
