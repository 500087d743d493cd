"""Peak memory of `bakeoff run` against a hostile endpoint, at the default limits.

A lineup of three endpoints — the hostile fake provider streamed and unstreamed (every mode of
`bakeoff.fake.HOSTILE`, `--repeats` times: endless streams, a 1 GB gzip bomb, 1-character token
floods, unending lines and bodies, wrong shapes, absurd usage) and a healthy one beside them — runs
through the real CLI. The fake servers run in this process, so `bakeoff run` is this script's only
child and `getrusage(RUSAGE_CHILDREN).ru_maxrss` is its peak RSS. The same lineup without the
hostile endpoints is measured first, in the same run, as the baseline.

Prints, per endpoint, the calls and their error classes; the healthy endpoint's outcome; the
elapsed time; and the peak RSS of both runs. Target (issue 17): peak RSS ≤ 300 MB throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bakeoff.fake import HOSTILE, FakeConfig, FakeServer

TARGET_MB = 300
EXTRA: list[str] = []


def serve(configs: list[FakeConfig]) -> list[str]:
    """Start fake servers on a loop in a daemon thread; their URLs."""
    loop = asyncio.new_event_loop()
    urls: list[str] = []
    ready = threading.Event()

    async def start() -> None:
        for c in configs:
            urls.append(await FakeServer(c).start())
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(30)
    return urls


def lineup(d: Path, hostile: str | None, healthy: str, repeats: int) -> Path:
    data = d / "hostile.jsonl"
    rows = [{"q": f"[[fault:{m}]]", "a": "x"} for m in sorted(HOSTILE)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eps = [f"  - {{name: healthy, base_url: '{healthy}', max_concurrency: 2}}\n"]
    if hostile:
        for name, stream in (("hostile-stream", "true"), ("hostile-body", "false")):
            eps.append(
                f"  - {{name: {name}, base_url: '{hostile}', max_concurrency: 4, stream: {stream},"
                " retry: {max_retries: 0}, timeouts: {first_token: 30, stall: 10}}\n"
            )
    f = d / ("hostile.yaml" if hostile else "baseline.yaml")
    f.write_text(
        f"run: {{suites: [hostile], probe: false, repeats: {repeats}}}\nreference: healthy\n"
        f"datasets:\n  - {{name: hostile, path: {data}, prompt: '{{{{ q }}}}', target: a,"
        " scorer: exact}\nendpoints:\n" + "".join(eps)
    )
    return f


def run(lu: Path, db: Path) -> tuple[float, int, str]:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "bakeoff", "run", "-c", str(lu), "--db", str(db), "-q", *EXTRA]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    return time.monotonic() - t0, r.returncode, r.stderr[-2000:] if r.returncode else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    hostile, healthy = serve([FakeConfig(), FakeConfig(markers=False, itl_ms=5)])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base_s, rc, err = run(lineup(d, None, healthy, args.repeats), d / "base.db")
        base_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert rc == 0, err
        took, rc, err = run(lineup(d, hostile, healthy, args.repeats), d / "hostile.db")
        # the largest child so far: the hostile run, unless the baseline was larger
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"modes: {len(HOSTILE)} x {args.repeats} repeats, streamed and unstreamed")
        print(f"bakeoff run exit status: {rc}{' ' + err if err else ''}")
        con = sqlite3.connect(d / "hostile.db")
        for (ep,) in con.execute("SELECT DISTINCT endpoint FROM calls ORDER BY endpoint"):
            classes = Counter(
                row[0] or "ok"
                for row in con.execute("SELECT error_class FROM calls WHERE endpoint = ?", (ep,))
            )
            print(f"  {ep:15s} {sum(classes.values()):3d} calls: {dict(sorted(classes.items()))}")
        biggest = con.execute(
            "SELECT max(length(coalesce(output_text,'')) + length(coalesce(response_raw,'')))"
            " FROM calls"
        ).fetchone()[0]
        con.close()
        db_mb = (d / "hostile.db").stat().st_size / 1e6
        print(f"largest stored call: {biggest / 1e6:.1f} MB; database {db_mb:.1f} MB")
        print(f"baseline (healthy endpoint alone): {base_s:.1f} s, peak RSS {base_mb:.0f} MB")
        print(f"with the hostile endpoints:        {took:.1f} s, peak RSS {peak_mb:.0f} MB")
        verdict = "within" if peak_mb <= TARGET_MB else "OVER"
        print(f"target peak RSS <= {TARGET_MB} MB: {verdict}")


if __name__ == "__main__":
    main()
