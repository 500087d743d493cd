"""`bakeoff watch`'s cost: the projection said before a check bounds what the check's stored calls
cost at the lineup's price; the actual figure is those calls × price; a per-check cap under one
check's projection makes no call and stores a gap; a per-day cap lets N checks through a day and
stops the next within it, then allows again the next day (the watch's simulated clock)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from bakeoff.plugins import load
from bakeoff.store import Store
from bakeoff.ui import Views
from bakeoff.watch import (
    CostCaps,
    DetectorSettings,
    Watch,
    WatchSettings,
    cost_lines,
    make_check,
    project,
    status,
)
from conftest import bakeoff

SMALL = WatchSettings(anchors=4, rotating=2, detector=DetectorSettings(baseline_checks=2))
PRICE = {"input_per_m": 3.0, "output_per_m": 15.0}
T0 = 1_700_000_000.0
SIX_HOURS = 6 * 3600.0


def _lineup(tmp_path: Path) -> Path:
    path = tmp_path / "priced.yaml"
    path.write_text(
        "endpoints:\n"
        "  - {name: priced, provider: fake, price: {input_per_m: 3.0, output_per_m: 15.0}}\n"
        "  - {name: free, provider: fake}\n"
    )
    return path


def _by_price(calls) -> float:
    return sum(
        (c["prompt_tokens"] * PRICE["input_per_m"] + c["completion_tokens"] * PRICE["output_per_m"])
        / 1e6
        for c in calls
    )


def test_projected_and_actual_cost_match_the_stored_calls_at_the_price(tmp_path):
    path = _lineup(tmp_path)
    watch = Watch(str(tmp_path / "w.db"), path, "w", SMALL)
    lineup = load(path)
    before = {p.endpoint: p for p in project(lineup, SMALL, 1, {})}
    assert before["free"].usd is None and before["free"].source == "none"  # never $0
    assert before["priced"].calls == 6 and before["priced"].recheck_calls == 4
    result = make_check(watch, now=T0)
    with closing(Store(watch.db)) as store:
        calls = [c for c in store.calls(result.run_id) if c["endpoint"] == "priced"]
        got = result.cost["priced"]
        assert got.calls == len(calls) == 6
        assert got.cost_usd is not None
        assert abs(got.cost_usd - _by_price(calls)) < 1e-9
        assert got.prompt_tokens == sum(c["prompt_tokens"] for c in calls)
        assert result.cost["free"].cost_usd is None and result.cost["free"].unpriced == 6
        # the price estimate bounds what the check cost; tokens too
        assert before["priced"].usd >= got.cost_usd
        assert before["priced"].prompt_tokens >= got.prompt_tokens
        # after a check: the projection is its calls at the highest priced call so far
        after = {
            p.endpoint: p
            for p in project(lineup, SMALL, 2, {"priced": max(c["cost_usd"] for c in calls)})
        }
        assert after["priced"].usd == 6 * max(c["cost_usd"] for c in calls)
        lines = cost_lines(store, "w", lineup, SMALL, SIX_HOURS, T0, CostCaps(None, 1.0))
    text = "\n".join(lines)
    assert "free: 6 calls" in text and "no price" in text
    assert "priced per day (4 checks): 24 calls" in text
    assert "spent in the last 24 h: $" in text


def test_a_per_check_cap_under_the_projection_makes_no_call_and_stores_a_gap(tmp_path, db_target):
    """On SQLite and PostgreSQL: the skipped check is stored in the watch's own table (no
    migration), with no call and no detector step."""
    path = _lineup(tmp_path)
    db = db_target
    watch = Watch(db, path, "w", SMALL, caps=CostCaps(per_check_usd=1e-6))
    result = make_check(watch, now=T0)
    assert result.skipped is not None and result.skipped.cap == "check"
    assert result.run_id is None and not result.steps
    with closing(Store(db)) as store:
        checks = store.watch_checks("w")
        assert [c.status for c in checks] == ["skipped-cost"]
        assert store.watch_steps("w") == []  # the detector is not stepped
        assert store.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0
        html = Views(store).page("/watch?name=w").html
    assert 'id="skipped"' in html and "check 1" in html and 'id="running"' not in html


def test_a_per_day_cap_lets_n_checks_through_then_stops_until_the_next_day(tmp_path):
    """Checks every 6 h of the same anchors (no rotating prompts: each check costs the same)
    under a cap of one check's cost plus one projection: the 2nd check is made, the 3rd and 4th
    (the same 24 h as the first) are skipped, the 5th (a day after the first) is made again."""
    path = _lineup(tmp_path)
    db = str(tmp_path / "w.db")
    same = WatchSettings(anchors=4, rotating=0, detector=SMALL.detector)
    first = make_check(Watch(db, path, "w", same), now=T0)
    one = first.cost["priced"].cost_usd
    assert one is not None
    with closing(Store(db)) as store:
        per_call = max(c["cost_usd"] or 0 for c in store.calls(first.run_id))
    projection = (same.anchors + same.anchors) * per_call  # the check + the re-check's worst
    watch = Watch(db, path, "w", same, caps=CostCaps(per_day_usd=one + projection * 1.01))
    made = [make_check(watch, now=T0 + k * SIX_HOURS) for k in range(1, 5)]
    assert [r.skipped is None for r in made] == [True, False, False, True]
    assert made[1].skipped is not None and made[1].skipped.cap == "day"
    assert made[3].cost["priced"].cost_usd == one
    with closing(Store(db)) as store:
        statuses = [c.status for c in store.watch_checks("w")]
        assert statuses == ["done", "done", "skipped-cost", "skipped-cost", "done"]
        assert {s.seq for s in store.watch_steps("w")} == {1, 2, 5}  # skipped: no step
        # `bakeoff watch status` at the 4th check: two made, two skipped in the last 24 h
        rows = {r.endpoint: r for r in status(store, now=T0 + 3 * SIX_HOURS)}
    priced = rows["priced"]
    assert priced.skipped_24h == 2 and priced.cost_24h is not None
    assert priced.cost_24h.calls == 8 and priced.cost_24h.cost_usd == round(2 * one, 8)
    assert rows["free"].cost_24h is not None and rows["free"].cost_24h.cost_usd is None


def test_once_exits_6_when_a_cap_keeps_the_check_and_says_the_projection(tmp_path):
    path = _lineup(tmp_path)
    db = str(tmp_path / "w.db")
    args = ["watch", "-c", str(path), "--once", "--db", db, "--anchors", "4", "--rotating", "2"]
    r = bakeoff(*args, "--max-cost-per-check", "0.000001")
    assert r.returncode == 6, r.stdout + r.stderr
    assert "skipped for cost" in r.stdout and "--max-cost-per-check" in r.stdout
    assert "projected cost of one check" in r.stderr and "no price" in r.stderr
    r = bakeoff(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "priced: cost 6 calls" in r.stdout and "free: cost 6 calls" in r.stdout
