"""`bench/client_overhead.py --against REV` runs (not timed: the figures are the bench's to print)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--seconds", "0.3", "--alternations", "2", "--concurrency", "2"]


def test_against_a_revision_prints_both_clients_and_the_ratio() -> None:
    out = subprocess.run(
        [sys.executable, "bench/client_overhead.py", "--against", "HEAD", *FAST],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    # who goes first alternates, so a drift in the machine's load falls on both
    rounds = re.findall(r"round (\d): +(HEAD|this tree) +(\d+) req/s", out)
    assert [(r, who) for r, who, _ in rounds] == [
        ("1", "HEAD"),
        ("1", "this tree"),
        ("2", "this tree"),
        ("2", "HEAD"),
    ]
    assert all(int(n) > 0 for *_, n in rounds)
    assert re.search(r"rate ratio this tree / HEAD: \d+\.\d{3}", out)
