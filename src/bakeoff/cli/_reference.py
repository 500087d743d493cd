"""The CLI reference (docs/CLI.md), generated from every command's `--help`: the help the program
prints is the documentation, and a test fails when they drift apart (`make docs` rewrites it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

WIDTH = "100"
HEADER = """# Command-line reference

Generated from `bakeoff ... --help` by `make docs` (`python -m bakeoff.cli._reference`);
`tests/test_cli_reference.py` fails when this file and the program disagree. Edit the help texts
in `src/bakeoff/cli/`, not this file.
"""


def _commands(cmd: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    sub = getattr(cmd, "commands", None) or {}  # a group (typer carries its own click)
    for name in sorted(sub):
        yield from _commands(sub[name], [*path, name])


def cli_reference() -> str:
    """The whole reference, in markdown: one section per command with its help text."""
    import typer
    from typer.testing import CliRunner

    from bakeoff.cli._app import app

    env = {"COLUMNS": WIDTH, "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # rich reads the width when it formats
    try:
        runner = CliRunner()
        parts = [HEADER]
        for path in _commands(typer.main.get_command(app), []):
            res = runner.invoke(app, [*path, "--help"], env=env)
            if res.exit_code != 0:
                raise RuntimeError(f"bakeoff {' '.join(path)} --help exited {res.exit_code}")
            text = "\n".join(line.rstrip() for line in res.output.strip("\n").splitlines())
            parts.append(f"## `{' '.join(['bakeoff', *path])}`\n\n```text\n{text}\n```\n")
        return "\n".join(parts)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    from pathlib import Path

    out = Path(__file__).resolve().parents[3] / "docs" / "CLI.md"
    out.write_text(cli_reference())
    print(f"wrote {out}")
