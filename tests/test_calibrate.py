"""`bakeoff calibrate` as a user runs it, on small pools (the full table is bench/fidelity_power.py)."""

from __future__ import annotations

import json
import sqlite3

from conftest import bakeoff


def test_calibrate_prints_false_positive_rate_and_power(tmp_path):
    out = tmp_path / "cal.json"
    args = ("calibrate", "--greedy-pool", "10", "--sampled-pool", "0", "--reps", "10")
    r = bakeoff(*args, "--keep", str(tmp_path / "pools"), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "false-positive rate" in r.stdout and "greedy@10" in r.stdout
    res = json.loads(out.read_text())
    for null in ("f16-other", "f32"):
        assert res[null]["greedy@10"] <= 0.2
    for distorted in ("q2_k", "q3_k_s", "sysprompt"):
        assert res[distorted]["greedy@10"] >= 0.8
        assert res[distorted]["greedy differ rate"] > res["f16-other"]["greedy differ rate"]

    # the kept pool is re-analysed without a call: the same table from the same samples
    db = sqlite3.connect(tmp_path / "pools" / "greedy.db")
    n_calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    again = tmp_path / "again.json"
    r = bakeoff(*args, "--keep", str(tmp_path / "pools"), "--json", str(again))
    assert r.returncode == 0, r.stderr
    assert "no new call" in r.stderr
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == n_calls
    assert json.loads(again.read_text()) == res
