"""One way through: every call a run makes to an endpoint — suite items, the fidelity audit, an LLM
judge, the capability probes, the arena's judge — passes that endpoint's rate limit, concurrency
slots and retry policy. Checked on the fake server's own request log (arrival times)."""

from __future__ import annotations

import json
import sqlite3

from conftest import bakeoff

RPM = 360  # one request every 1/6 s
WINDOW_S = 3.0


def _most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_kind_of_call_shares_the_endpoints_limits(tmp_path, fake_proc):
    log = tmp_path / "ep.jsonl"
    # every prompt's first attempt is a 429 (Retry-After 0.05 s): each kind of call must retry it
    ep = fake_proc("--fault", "rate_limit=1", "--max-faults-per-prompt", "1", log=log)
    ref = fake_proc()
    # another reply than ref's: the arena never offers a pair of identical outputs
    other = fake_proc("--mode", "fixed", "--reply", "Something else entirely.")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "".join(json.dumps({"q": f"Name colour {i}.", "a": "red"}) + "\n" for i in range(3))
    )
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "reference: ref\n"
        "run: {suites: [arith, qa], limit: 3, probe: true, probe_max_context: 512}\n"
        "audit: {budget: 4, batch: 2}\n"
        f"datasets:\n  - {{name: qa, path: {qa}, fields: {{question: q}}, target: a,"
        " scorer: judge, judge: ep}\n"
        "endpoints:\n"
        f"  - {{name: ep, base_url: '{ep.url}', max_concurrency: 4, rate_limit: {{rpm: {RPM}}},"
        " retry: {backoff_base_s: 0.05}}\n"
        f"  - {{name: ref, base_url: '{ref.url}'}}\n"
        f"  - {{name: other, base_url: '{other.url}'}}\n"  # the arena pairs ref and other; ep judges
    )
    db = str(tmp_path / "b.db")
    r = bakeoff("run", "-c", str(lu), "--db", db, "--json", "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    run_id = json.loads(r.stdout)["run_id"]
    n_run = len(_log(log))
    a = bakeoff("arena", run_id, "--db", db, "--judge", "ep", "--pairs", "4")
    assert a.returncode == 0, a.stderr[-3000:]
    entries = _log(log)
    kinds = {
        "probe": [e for e in entries[:n_run] if e["prompt"].startswith("The secret code")],
        "judge": [e for e in entries[:n_run] if "Reply to grade" in e["prompt"]],
        "arena": [e for e in entries[n_run:] if "judging two AI assistant" in e["prompt"]],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    interval = 60.0 / RPM
    for name, part in (("run", entries[:n_run]), ("arena", entries[n_run:])):
        most = _most_in_window([e["t"] for e in part], WINDOW_S)
        # the limiter spaces requests `interval` apart: a window holds WINDOW_S / interval + 1,
        # plus two for requests whose slots came due while the loop was busy
        assert most <= WINDOW_S / interval + 3, (name, most, len(part))
    # every kind met 429s and retried them: each prompt asked again after its 429
    for name, part in kinds.items():
        faulted = {e["prompt"] for e in part if e["fault"] == "rate_limit"}
        retried = {e["prompt"] for e in part if e["fault"] is None}
        assert faulted and faulted == retried, name
    con = sqlite3.connect(db)
    probe = con.execute("SELECT result_json FROM probes WHERE endpoint = 'ep'").fetchone()[0]
    con.close()
    assert "rate_limited" not in probe and json.loads(probe)["context"]["points"]  # none gave up
