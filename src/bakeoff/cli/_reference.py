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

## Exit codes

One table for every command (scripts and CI jobs branch on these):

| code | meaning | e.g. |
| --- | --- | --- |
| 0 | done; every check asked for passed | a complete run, a verified bundle |
| 1 | a check of evidence failed | `audit verify` on a changed bundle; `audit --rerun` that does not reproduce the run's verdicts |
| 2 | refused input or a fatal error, nothing (more) measured; the message names file, line and field where there is one | a malformed lineup, an unset key variable, a dead endpoint at preflight, a lineup that plans no call, a full disk (`--resume` then) |
| 3 | the run completed, but an endpoint's calls failed too often to score it (`run.max_failed_share`); one line per endpoint and suite, in the provider's words | `broke: arith: no score: 20/20 failed — HTTP 402: insufficient credits` (`--allow-errors` accepts it) |
| 4 | `watch --once`: a gap — an endpoint's check failed (outage, 5xx, timeout: fewer than half its anchor prompts answered), so nothing was learned of it; never counted as evidence | `gap: 0/24 anchors answered (http_5xx)` |
| 5 | `watch --once`: an alarm — an endpoint's answers changed beyond its baseline's honest rate (wins over a gap) | `ALARM watch w check 7 (run …): ep: 21/24 anchors changed` |
| 6 | stopped at its cost cap. `audit`: at `--max-cost` (`audit.max_cost`) before its budget; the verdicts are those of the calls made, inconclusive where too few. `watch --once`: the check was not made (`--max-cost-per-check`, `--max-cost-per-day`); stored as skipped for cost, a gap, never evidence (an alarm still wins) | `the audit stopped at its cost cap after 3 rounds: $0.0182 spent of the $0.02 cap, the next round ~$0.0061`; `watch w check 5: skipped for cost: $0.0042 spent in the last 24 h + up to $0.0011 …` |
| 100 | a `--fail-on` gate failed (`run`, `show`, `compare`); one line per rule | `score<0.9`, `different`, `not-same` |
| 130 | interrupted (Ctrl-C, SIGTERM); the work done is stored | `bakeoff run --resume RUN` goes on |
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
