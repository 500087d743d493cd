"""20 `kill -9` trials at random moments of a run, each resumed (issue 7, item 2).

A fake provider (its own process, logging every request) answers a scripted arith suite with a known
score. One uninterrupted run gives the reference scores. Then, per trial: a fresh database, `bakeoff
run` killed with SIGKILL at a random moment (see below), the prompts that had a stored success at the kill noted, then the
same command run again (it resumes the unfinished run). Checked per trial: no call finished before the
kill was asked again (the server's log), the final scores equal the uninterrupted run's, one run in the
database, `PRAGMA integrity_check` ok.

    .venv/bin/python bench/crash_trials.py [--trials 20] [--items 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bakeoff.suites import Arith

BAKEOFF = [sys.executable, "-m", "bakeoff"]


def ok_prompts(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = con.execute("SELECT request_json FROM calls WHERE status = 'ok'").fetchall()
        con.close()
    except sqlite3.Error:
        return set()
    return {json.loads(r[0])["body"]["messages"][-1]["content"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bakeoff-crash-"))
    items = Arith().items(seed=0, n=args.items)
    script = {
        it.messages[0]["content"]: str(it.target if i % 2 == 0 else it.target + 1)
        for i, it in enumerate(items)
    }
    (tmp / "script.json").write_bytes(orjson.dumps(script))
    log = tmp / "server.jsonl"
    server = subprocess.Popen(
        [
            *BAKEOFF,
            "fake-server",
            "--port",
            "0",
            "--script",
            str(tmp / "script.json"),
            "--ttft-ms",
            "60",
            "--itl-ms",
            "10",
            "--log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    url = re.search(r"(http://\S+)", server.stdout.readline()).group(1)  # type: ignore[union-attr]
    (tmp / "l.yaml").write_text(
        f"""
reference: ep
defaults: {{temperature: 0, max_tokens: 16}}
run: {{suites: [arith], limit: {args.items}, probe: false}}
endpoints:
  - {{name: ep, base_url: {url}, max_concurrency: 2}}
"""
    )

    def cmd(db: Path) -> list[str]:
        return [
            *BAKEOFF,
            "run",
            "-c",
            str(tmp / "l.yaml"),
            "--db",
            str(db),
            "--no-cache",
            "--no-report",
            "-q",
            "--json",
        ]

    def served() -> list[str]:
        return (
            [json.loads(x)["prompt"] for x in log.read_text().splitlines()] if log.exists() else []
        )

    t = time.perf_counter()
    base = subprocess.run(cmd(tmp / "base.db"), capture_output=True, text=True, check=True)
    base_s = time.perf_counter() - t
    reference = json.loads(base.stdout)["endpoints"][0]["suites"]
    con = sqlite3.connect(tmp / "base.db")
    first_call = con.execute("SELECT MIN(started_at) FROM calls").fetchone()[0]
    created = con.execute("SELECT MAX(started_at) FROM calls").fetchone()[0]
    con.close()
    # start-up: from the process start to the first call (measured: the run's span subtracted)
    startup_s = max(0.2, base_s - (created - first_call) - 0.2)
    print(
        f"uninterrupted run: {args.items} calls in {base_s:.2f} s, arith score "
        f"{reference['arith']['score']}"
    )
    print(
        f"{'trial':>5} {'kill at s':>9} {'stored':>7} {'repeated':>9} {'same scores':>12} "
        f"{'integrity':>10}"
    )
    failures = 0
    env = dict(os.environ)
    for i in range(args.trials):
        db = tmp / f"t{i}.db"
        while True:  # a kill must land while the run is still going: else draw again
            db.unlink(missing_ok=True)
            p = subprocess.Popen(
                cmd(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            t0 = time.perf_counter()
            if i % 2 == 0:  # during start-up: imports, the database and the run being created
                time.sleep(rng.uniform(0.05, startup_s))
            else:  # while calls land: after a random number of stored successes
                target = rng.randint(1, args.items - 4)
                while len(ok_prompts(db)) < target and p.poll() is None:
                    time.sleep(0.005)
            at = time.perf_counter() - t0
            p.send_signal(signal.SIGKILL)
            p.wait()
            if p.returncode == -signal.SIGKILL:
                break
        finished = ok_prompts(db)
        seen = len(served())
        r = subprocess.run(cmd(db), capture_output=True, text=True, env=env)
        after = served()[seen:]
        repeated = len(finished & set(after))
        try:
            final = json.loads(r.stdout)
            same = final["endpoints"][0]["suites"] == reference and final["status"] == "complete"
        except (json.JSONDecodeError, KeyError, IndexError):
            same = False
        con = sqlite3.connect(db)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        con.close()
        ok = r.returncode == 0 and repeated == 0 and same and integrity == "ok" and runs == 1
        failures += not ok
        print(
            f"{i + 1:>5} {at:>9.2f} {len(finished):>7} {repeated:>9} {same!s:>12} "
            f"{integrity:>10}{'' if ok else '  FAILED: ' + r.stderr[-300:]}"
        )
    server.send_signal(signal.SIGTERM)
    server.wait()
    print(
        f"{args.trials - failures} of {args.trials} trials resumed with no finished call repeated, "
        "the uninterrupted run's scores and an intact database"
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
