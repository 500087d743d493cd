"""`bakeoff calibrate` as a user runs it, on small pools (the full table is bench/fidelity_power.py)."""

from __future__ import annotations

import json

from conftest import bakeoff


def test_calibrate_prints_false_positive_rate_and_power(tmp_path):
    out = tmp_path / "cal.json"
    r = bakeoff(
        "calibrate",
        "--greedy-pool",
        "10",
        "--sampled-pool",
        "0",
        "--reps",
        "10",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "false-positive rate" in r.stdout and "greedy@10" in r.stdout
    res = json.loads(out.read_text())
    for null in ("f16-other", "f32"):
        assert res[null]["greedy@10"] <= 0.2
    for distorted in ("q2_k", "q3_k_s", "sysprompt"):
        assert res[distorted]["greedy@10"] >= 0.8
        assert res[distorted]["greedy differ rate"] > res["f16-other"]["greedy differ rate"]
