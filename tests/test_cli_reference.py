"""docs/CLI.md is what the program's `--help` says (regenerate with `make docs`)."""

from pathlib import Path

from bakeoff.cli._reference import cli_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "CLI.md"


def test_cli_reference_matches_the_help():
    expected = cli_reference()
    assert DOC.exists(), "docs/CLI.md is missing: run make docs"
    assert DOC.read_text() == expected, "docs/CLI.md is stale: run make docs"
    for command in ("bakeoff run", "bakeoff calibrate", "bakeoff local up", "bakeoff suites show"):
        assert f"## `{command}`" in expected
