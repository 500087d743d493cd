"""Peak memory of `bakeoff run` against a hostile endpoint, at the default limits.

A lineup of three endpoints — the hostile fake provider streamed and unstreamed (every mode of
`bakeoff.fake.HOSTILE`, `--repeats` times: endless streams, a 1 GB gzip bomb, 1-character token
floods, unending lines and bodies, wrong shapes, absurd usage) and a healthy one beside them — runs
through the real CLI. The fake servers run in this process, so `bakeoff run` is this script's only
child and `getrusage(RUSAGE_CHILDREN).ru_maxrss` is its peak RSS. The same lineup without the
hostile endpoints is measured first, in the same run, as the baseline.

Prints, per endpoint, the calls and their error classes; the healthy endpoint's outcome; the
elapsed time; and the peak RSS of both runs. Target (issue 17): peak RSS ≤ 300 MB throughout.

`--scorer`: the hostile reference scorer corpus instead (`bakeoff.fake._hostile_scorer`, issue
31): one `bakeoff run` per mode, a sampled audit whose reference (scorer: endpoint) is the
hostile server in that mode and a healthy candidate beside it. Prints, per mode, whether the run
ended (each gets `--limit` seconds, then is killed), its exit status, elapsed time, peak RSS (that
child's own VmHWM, read every 20 ms until it exits) and its error line. Target: every run ends, peak RSS
≤ 300 MB in every mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bakeoff.fake import HOSTILE, FakeConfig, FakeServer
from bakeoff.fake._hostile_scorer import HOSTILE_SCORER, HostileScorerServer

TARGET_MB = 300
EXTRA: list[str] = []


def serve(configs: list[FakeConfig], scorer: HostileScorerServer | None = None) -> list[str]:
    """Start fake servers (and the hostile scorer server) on a loop in a daemon thread; their
    URLs."""
    loop = asyncio.new_event_loop()
    urls: list[str] = []
    ready = threading.Event()

    async def start() -> None:
        for c in configs:
            urls.append(await FakeServer(c).start())
        if scorer is not None:
            await scorer.start()
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


def scorer_lineup(d: Path, scorer_url: str, healthy: str, mode: str) -> Path:
    f = d / f"scorer-{mode}.yaml"
    f.write_text(
        "run: {suites: [], probe: false}\nreference: ref\n"
        "audit: {regimes: [sampled], budget: 4, batch: 2, scorer: endpoint}\nendpoints:\n"
        f"  - {{name: ref, base_url: '{scorer_url}', model: m, stream: false}}\n"
        f"  - {{name: cand, base_url: '{healthy}', model: fake-model}}\n"
    )
    return f


def vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set so far (kB), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_bounded(lu: Path, db: Path, limit: float) -> tuple[bool, int, float, float, str]:
    """`bakeoff run` killed after `limit` seconds: (ended by itself, exit status, seconds, its
    own peak RSS in MB, its error line — or the last line of its stderr)."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "bakeoff", "run", "-c", str(lu), "--db", str(db), "-q"]
    err = db.with_suffix(".err")
    with err.open("w") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, env=os.environ)
        killer = threading.Timer(limit, p.kill)
        killer.start()
        hwm = 0
        # the child's own VmHWM: wait4's ru_maxrss would also count this process's image,
        # which the child had before its exec
        while True:
            hwm = max(hwm, vm_hwm_kb(p.pid))
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        killer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    lines = err.read_text().strip().splitlines()
    said = [line for line in lines if line.startswith(("error:", "Traceback"))] or lines or [""]
    ended = p.returncode != -9
    return ended, p.returncode, time.monotonic() - t0, hwm / 1024, said[-1]


def sigterm_while_scoring(lu: Path, db: Path, scorer: HostileScorerServer, mode: str) -> str:
    """A second run of the mode, sent SIGTERM 0.5 s after the scorer got its first request: the
    seconds to exit (and its status), or that the run had ended before the scorer was asked."""
    cmd = [sys.executable, "-m", "bakeoff", "run", "-c", str(lu), "--db", str(db), "-q"]
    before = scorer.scoring.get(mode, 0)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    deadline = time.monotonic() + 120
    while scorer.scoring.get(mode, 0) == before and p.poll() is None:
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            return "scorer never asked"
        time.sleep(0.02)
    time.sleep(0.5)
    if p.poll() is not None:
        return f"ended by itself (exit {p.returncode})"
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "NOT ENDED 60 s after SIGTERM"
    return f"{time.monotonic() - sent:.2f} s to exit {rc}"


def scorer_main(limit: float) -> None:
    scorer = HostileScorerServer()
    (healthy,) = serve([FakeConfig(markers=False)], scorer)
    worst, all_ended = 0.0, True
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print(f"{'mode':22s} ended exit   time   peak RSS  SIGTERM mid-scoring     error line")
        slowest = 0.0
        for mode in HOSTILE_SCORER:
            lu = scorer_lineup(d, scorer.base_url(mode), healthy, mode)
            ended, rc, took, mb, last = run_bounded(lu, d / f"{mode}.db", limit)
            worst, all_ended = max(worst, mb), all_ended and ended
            term = sigterm_while_scoring(lu, d / f"{mode}-term.db", scorer, mode)
            if term.endswith(("exit 130", "exit 2")) and " s to " in term:
                slowest = max(slowest, float(term.split()[0]))
            print(f"{mode:22s} {'yes' if ended else 'NO ':5s} {rc:4d} {took:6.1f} s {mb:6.0f} MB  "
                  f"{term:22s}  {last[:120]}")  # fmt: skip
        print(f"slowest exit after a SIGTERM mid-scoring: {slowest:.2f} s (target <= 2 s)")
    print(f"every run ended: {'yes' if all_ended else 'NO'}; largest peak RSS {worst:.0f} MB")
    print(f"target peak RSS <= {TARGET_MB} MB: {'within' if worst <= TARGET_MB else 'OVER'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scorer", action="store_true", help="the hostile reference scorer corpus")
    ap.add_argument("--limit", type=float, default=300, help="--scorer: seconds per run")
    args = ap.parse_args()
    if args.scorer:
        scorer_main(args.limit)
        return
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
