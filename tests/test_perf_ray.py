"""`bakeoff perf --ray` on a real two-node Ray cluster on loopback (a head and a second node, each
its own raylet with one CPU) against the fake server in its own process: one generator per node,
both sending on one shared schedule; the per-node and aggregate figures are stored and shown, the
nodes' rates add up to the aggregate, every planned request arrives once, and the two nodes'
requests arrive at the server aligned with the schedule.

Without Ray installed these tests are skipped with the reason, unless BAKEOFF_REQUIRE_RAY=1
(`make test`): then its absence fails them."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from bakeoff.perf import LevelSpec, synthetic_requests
from bakeoff.perf._load import self_check
from bakeoff.store import Store
from conftest import bakeoff

RATE = 40.0
DURATION_S = 4.0
ALIGN_MS = 5.0
"""How far apart the two nodes' schedules may arrive at the server (median of arrival - intended)."""
SMALL = {"object_store_memory": 80 * 1024**2}
"""Ray's smallest object store per node: the records are small, the test machine has 2 cores."""


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("BAKEOFF_REQUIRE_RAY") == "1":
            pytest.fail("BAKEOFF_REQUIRE_RAY=1 but Ray is not installed (pip install -e '.[dev]')")
        pytest.skip("Ray is not installed (pip install 'bakeoff[ray]')")


@pytest.fixture(scope="module")
def ray_cluster():
    _need_ray()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, **SMALL},
    )
    cluster.add_node(num_cpus=1, **SMALL)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def _perf(tmp_path: Path, url: str, address: str, *extra: str):
    lu = tmp_path / "l.yaml"
    lu.write_text(f"endpoints:\n  - {{name: fk, base_url: '{url}', model: m}}\n")
    return bakeoff(
        "perf",
        "-c",
        str(lu),
        "--db",
        str(tmp_path / "b.db"),
        "--mode",
        "open",
        "--levels",
        f"{RATE:g}",
        "--duration",
        f"{DURATION_S:g}",
        "--warmup",
        "0.5",
        "--cooldown",
        "0.3",
        "--workload",
        "32x5",
        "--ray",
        address,
        *extra,
    )


def test_bare_ray_means_auto_and_a_missing_cluster_is_one_line(tmp_path, fake_proc, monkeypatch):
    """`--ray` with no address joins the cluster on this host; with none there, one line, exit 2,
    nothing stored. (Before the module's cluster starts: a bare --ray would join that one.)"""
    _need_ray()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    fk = fake_proc("--mode", "fixed", "--reply-tokens", "5")
    r = _perf(tmp_path, fk.url, "127.0.0.1:1", "-q")
    assert r.returncode == 2, r.stderr
    assert "--ray: no Ray cluster at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b.db").exists() or not Store(tmp_path / "b.db").perf_runs()
    r = _perf(tmp_path, fk.url, "-q")  # a bare --ray: the cluster of this host, none here
    assert r.returncode == 2 and "no Ray cluster runs on this host" in r.stderr, r.stderr
    from bakeoff.cli._app import _optional_values

    assert _optional_values(["perf", "--ray"]) == ["perf", "--ray", "auto"]
    assert _optional_values(["perf", "--ray", "-q"]) == ["perf", "--ray", "auto", "-q"]
    assert _optional_values(["perf", "--ray", "h:1"]) == ["perf", "--ray", "h:1"]
    assert _optional_values(["run", "--ray"]) == ["run", "--ray"]
    assert _optional_values(["--debug", "perf", "--ray"]) == ["--debug", "perf", "--ray", "auto"]
    assert _optional_values(["--version"]) == ["--version"]


@pytest.mark.slow
def test_two_nodes_share_one_schedule_and_add_up(tmp_path, fake_proc, ray_cluster):
    log = tmp_path / "fake.jsonl"
    fk = fake_proc(
        "--mode", "fixed", "--reply-tokens", "5", "--ttft-ms", "5", "--itl-ms", "1", log=log
    )
    r = _perf(tmp_path, fk.url, ray_cluster.address, "--json", "-q")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert len({g["node"] for g in s["generators"]}) == 2
    lv = s["endpoints"]["fk"]["levels"][0]
    nodes = lv["nodes"]
    assert len(nodes) == 2
    # each node checked itself: on this shared 2-core machine (two raylets, the fake, the driver)
    # one send in 80 may be late by a scheduling hiccup, which is already over the 1% limit; the
    # schedule itself is checked below from the server's side
    for n in nodes:
        # a drifting schedule makes every send late: half still fails it, and leaves a loaded
        # machine's scheduling hiccups their room (see test_perf.test_open_loop_keeps_its_schedule)
        assert n["late_share"] <= 0.5 and n["client_cpu"] < 0.8, n
        assert n["valid"] == (not n["why"])
        assert all(f"node {n['address']}: {w}" in lv["self_check"]["why"] for w in n["why"])
    # every planned request sent once, half by each node
    planned = round(RATE * DURATION_S)
    assert lv["all_requests"] == planned
    assert sorted(n["requests"] for n in nodes) == [planned // 2, planned // 2]
    # the aggregate holds the offered rate; the nodes' rates, over the level's window, add up to it
    agg = lv["metrics"]["request_throughput"]
    assert abs(agg - RATE) <= 0.05 * RATE, agg
    node_sum = sum(n["request_throughput"] for n in nodes)
    assert node_sum == pytest.approx(agg, abs=0.002)  # each rounded to 3 decimals
    for n in nodes:
        assert n["offered_rate"] == RATE / 2
        assert abs(n["request_throughput"] - RATE / 2) <= 0.05 * RATE / 2, n
        assert n["clock_uncertainty_ms"] < ALIGN_MS
    # the server saw every planned prompt exactly once
    prompts = [q.messages[-1]["content"] for q in synthetic_requests(32, 5, 256, 0)]
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    seq_of = {p: i for i, p in enumerate(prompts)}
    arrived = sorted(seq_of[e["prompt"]] for e in seen)
    assert arrived == list(range(planned))
    # schedules align: per node, the server's arrival time minus the intended send time is the same
    # constant (the common start plus the loopback trip) within ALIGN_MS
    # (robust statistics: with another process busy, a few sends came 20 ms late; a node off its
    # schedule is off by hundreds of ms over these 4 s)
    shard_of = {g["shard"]: g["node"] for g in s["generators"]}
    offsets: dict[str, list[float]] = {}
    for e in sorted(seen, key=lambda e: seq_of[e["prompt"]]):
        seq = seq_of[e["prompt"]]
        offsets.setdefault(shard_of[seq % 2], []).append(e["t"] * 1000 - seq * 1000 / RATE)
    medians = [statistics.median(v) for v in offsets.values()]
    assert abs(medians[0] - medians[1]) <= ALIGN_MS, medians
    for v in offsets.values():
        q = statistics.quantiles(v, n=4)
        assert q[2] - q[0] <= 2 * ALIGN_MS, q  # the middle half of the sends on time
        half = len(v) // 2  # and no drift: the schedule's second half keeps the first's offset
        drift = statistics.median(v[half:]) - statistics.median(v[:half])
        assert abs(drift) <= ALIGN_MS, drift
    # stored and shown: the summary in the store, the table on stderr, the UI's perf page
    store = Store(tmp_path / "b.db")
    row = store.perf_run(s["perf_id"])
    stored = json.loads(row["summary_json"])
    assert stored["endpoints"]["fk"]["levels"][0]["nodes"] == nodes
    assert "load generators per node (Ray)" in r.stderr
    html = _ui_page(tmp_path / "b.db", f"/perf?id={s['perf_id']}")
    assert "load generators per node (Ray)" in html
    for n in nodes:
        assert n["node"][:8] in html


@pytest.mark.slow
def test_closed_loop_shares_concurrency_and_budget_across_nodes(tmp_path, fake_proc, ray_cluster):
    """Closed loop over two nodes: at c=1 one node has nothing to do and is not called saturated;
    the request budget is the level's, not each shard's; the nodes' rates add up."""
    fk = fake_proc("--mode", "fixed", "--reply-tokens", "5", "--ttft-ms", "5", "--itl-ms", "1")
    lu = tmp_path / "l.yaml"
    lu.write_text(f"endpoints:\n  - {{name: fk, base_url: '{fk.url}', model: m}}\n")
    r = bakeoff(
        "perf", "-c", str(lu), "--db", str(tmp_path / "b.db"), "--levels", "1,4", "--no-stop",
        "--duration", "3", "--warmup", "0", "--cooldown", "0", "--requests", "30",
        "--workload", "32x5", "--ray", ray_cluster.address, "--json", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    levels = json.loads(r.stdout)["endpoints"]["fk"]["levels"]
    for lv in levels:
        assert lv["all_requests"] == 30, lv["label"]
        nodes = lv["nodes"]
        assert all(n["client_cpu"] < 0.8 for n in nodes), nodes
        total = sum(n["request_throughput"] or 0 for n in nodes)
        # each figure rounded to 3 decimals, so they add up to within 0.002
        assert total == pytest.approx(lv["metrics"]["request_throughput"], abs=0.002)
    one, four = levels
    assert sorted(n["requests"] for n in one["nodes"]) == [0, 30]
    assert sorted(n["requests"] for n in four["nodes"]) == [15, 15]


def _ui_page(db: Path, address: str) -> str:
    from bakeoff.ui import Views

    return Views(Store(db)).page(address).html


def test_a_node_that_falls_behind_invalidates_its_level_by_name():
    """The level's check names the node whose generator was late, and only that node is invalid."""
    spec = LevelSpec("open", 20.0, 2.0, None, 0.0, 0.0)

    def part(shard: int, address: str, late_ms: float, cpu: float) -> dict:
        recs = [{"seq": i, "lateness_ms": late_ms, "status": "ok"} for i in range(shard, 40, 2)]
        return {
            "records": recs,
            "cpu": cpu,
            "lag_ms": [],
            "start_late_ms": 0.1,
            "shard": shard,
            "node": f"node{shard}",
            "address": address,
            "clock_offset_ms": 0.0,
            "clock_uncertainty_ms": 0.3,
        }

    parts = [part(0, "10.0.0.1", 0.2, 0.1), part(1, "10.0.0.2", 12.0, 0.95)]
    check = self_check(spec, [r for p in parts for r in p["records"]], parts)
    assert not check["valid"]
    good, bad = check["nodes"]
    assert good["valid"] and not bad["valid"]
    assert any(w.startswith("node 10.0.0.2: 100.0% of sends") for w in check["why"])
    assert any(w.startswith("node 10.0.0.2: client CPU at 95%") for w in check["why"])
    assert not any("10.0.0.1" in w for w in check["why"])
