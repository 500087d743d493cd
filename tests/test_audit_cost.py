"""What the audit costs, per endpoint and regime, and its cost cap (`audit.max_cost`,
`bakeoff audit --max-cost`): over fake providers with prices in the lineup."""

from __future__ import annotations

import asyncio
import json

from bakeoff.audit import run_audit
from bakeoff.audit._cap import project
from bakeoff.lineups import parse_lineup
from bakeoff.runs import RunOptions, create_run, execute, summary_of
from bakeoff.store import Store
from bakeoff.ui import write_report
from conftest import bakeoff
from uirun import report_pages

PRICED = """
reference: ref
run: {suites: []}
audit: {regimes: [greedy, sampled], budget: 20, batch: 10, scorer: none, seed: 7}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}, price: {input_per_m: 1.5, output_per_m: 2}}
  - {name: twin, provider: fake, fake: {mode: echo}, price: {input_per_m: 3, output_per_m: 5}}
  - {name: other, provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}
  - name: flaky
    provider: fake
    fake: {mode: echo, faults: {auth: 0.5}, seed: 2}
    price: {input_per_m: 1, output_per_m: 1}
"""

FLAT = """
reference: ref
run: {{suites: []}}
audit: {{regimes: [greedy], budget: 100, batch: 10, max_tokens: 3, scorer: none, seed: 3{cap}}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: fixed, reply: "The same answer."}},
     price: {{input_per_m: 0, output_per_m: 1000}}}}
  - {{name: twin, provider: fake, fake: {{mode: fixed, reply: "The same answer."}},
     price: {{input_per_m: 0, output_per_m: 1000}}}}
"""
"""Every call costs the same (a fixed reply of `max_tokens`, output tokens alone priced, so the
price-based projection of the first round is exact too): a round of 10 prompts is
30 calls (the reference twice, the twin once), so the round the cap stops before is known."""


def _audit(tmp_path, text: str) -> tuple[Store, str]:
    lineup = parse_lineup(text)
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "a.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    return store, run_id


def _expected(store: Store, run_id: str, prices: dict[str, tuple[float, float]]) -> dict:
    """Per endpoint and regime, from the stored calls' own token counts × the lineup's prices."""
    out: dict = {}
    rows = store.db.execute(
        "SELECT endpoint, suite, status, prompt_tokens, completion_tokens FROM calls"
        " WHERE run_id = ?",
        (run_id,),
    ).fetchall()
    for ep, suite, status, p, c in rows:
        e = out.setdefault(ep, {}).setdefault(suite.split(".")[1], [0, 0, 0.0])
        e[0] += 1
        if status == "ok" and ep in prices:
            e[1] += 1
            e[2] += (p * prices[ep][0] + c * prices[ep][1]) / 1e6
    return out


def test_each_regime_costs_its_calls_tokens_at_the_lineup_price(tmp_path):
    store, run_id = _audit(tmp_path, PRICED)
    s = summary_of(store, run_id)
    prices = {"ref": (1.5, 2.0), "twin": (3.0, 5.0), "flaky": (1.0, 1.0)}
    want = _expected(store, run_id, prices)
    for name in ("ref", "twin", "flaky"):
        cost = s.endpoint(name).audit_cost
        assert cost is not None and set(cost) == {"greedy", "sampled"}
        for regime, c in cost.items():
            n, _, usd = want[name][regime]
            assert c.calls == n and c.cost_usd is not None
            assert abs(c.cost_usd - usd) < 1e-9, (name, regime, c, usd)
    # the reference answers each greedy prompt twice (its repeat is the null), sampled once
    ref = s.endpoint("ref").audit_cost
    assert ref is not None and ref["greedy"].calls == 40 and ref["sampled"].calls == 20
    # a failed call is a call, with no tokens and no cost; the rest are priced
    flaky = s.endpoint("flaky").audit_cost
    assert flaky is not None and flaky["greedy"].failed > 0
    assert flaky["greedy"].unpriced == 0
    # no price known: "no price", never 0 $
    other = s.endpoint("other").audit_cost
    assert other is not None
    assert all(c.cost_usd is None and c.usd_text() == "no price" for c in other.values())
    assert other["greedy"].unpriced == other["greedy"].calls - other["greedy"].failed > 0
    assert "no price" in other["greedy"].text() and "$0" not in other["greedy"].text()
    # the bill's audit purpose is the same calls summed
    bill = s.endpoint("twin").bill
    assert bill is not None
    twin = s.endpoint("twin").audit_cost
    assert twin is not None
    total = sum(c.cost_usd or 0 for c in twin.values())
    assert abs(bill.by_purpose["audit"] - total) < 1e-6
    # the report's audit page has the same table
    write_report(store, run_id, tmp_path / "r.html")
    page = report_pages(tmp_path / "r.html")[f"/run/{run_id}/audit"]["html"]
    assert 'id="audit-cost"' in page and 'id="audit-stop"' not in page
    for name, regime in (("twin", "sampled"), ("other", "greedy")):
        c = summary_of(store, run_id).endpoint(name).audit_cost[regime]  # type: ignore[index]
        row = f'<td>{name}</td><td>{regime}</td><td class="n">{c.calls}</td>'
        assert row in page and c.usd_text() in page.split(row)[1].split("</tr>")[0]
    store.close()


def test_the_cap_stops_before_the_round_that_would_cross_it(tmp_path):
    """Flat costs: the cap at 3.5 rounds' cost lets 3 rounds run and stops before the 4th; the
    verdict is inconclusive and says the cap stopped it; nothing is spent past the cap."""
    store, run_id = _audit(tmp_path / "free", FLAT.format(cap=""))
    rows = store.db.execute(
        "SELECT cost_usd FROM calls WHERE run_id = ? AND status = 'ok'", (run_id,)
    ).fetchall()
    per_call = {r[0] for r in rows}
    assert len(per_call) == 1 and len(rows) == 300  # 10 rounds of 30 calls, each the same cost
    one = per_call.pop()
    assert store.audit_stop(run_id) is None
    store.close()

    cap = 3.5 * 30 * one
    store, run_id = _audit(tmp_path / "capped", FLAT.format(cap=f", max_cost: {cap}"))
    stop = store.audit_stop(run_id)
    assert stop is not None and stop.rounds == 3 and stop.cap_usd == cap
    spent = store.db.execute(
        "SELECT COUNT(*), SUM(cost_usd) FROM calls WHERE run_id = ?", (run_id,)
    ).fetchone()
    assert spent[0] == 90 and abs(spent[1] - 90 * one) < 1e-9 <= cap - spent[1]
    assert abs(stop.spent_usd - spent[1]) < 1e-9 and abs(stop.next_round_usd - 30 * one) < 1e-9
    s = summary_of(store, run_id)
    f = s.endpoint("twin").fidelity
    assert f is not None and f.verdict == "inconclusive"
    assert f.why is not None and "stopped at its cost cap" in f.why
    assert s.audit_stop == stop and stop.text() in s.warnings
    assert f"${one * 90:.4g} spent of the ${cap:.4g} cap" in stop.text()
    write_report(store, run_id, tmp_path / "r.html")
    page = report_pages(tmp_path / "r.html")[f"/run/{run_id}/audit"]["html"]
    assert f'<p class="warn" id="audit-stop">{stop.text()}</p>' in page
    store.close()


def test_the_cap_checks_the_first_round_and_never_overspends(tmp_path):
    """Prompt-sized costs (echo): before the first priced call the round is projected from the
    price, so a cap below one round makes no call; a looser cap never ends past the cap plus one
    call's cost."""
    text = PRICED.replace("scorer: none, seed: 7}", "scorer: none, seed: 7, max_cost: 0.00001}")
    text = text.replace("budget: 20", "budget: 60")
    store, run_id = _audit(tmp_path / "tiny", text.replace("output_per_m: 5", "output_per_m: 500"))
    stop = store.audit_stop(run_id)
    assert stop is not None and stop.rounds == 0 and stop.spent_usd == 0
    assert (
        store.db.execute("SELECT COUNT(*) FROM calls WHERE run_id = ?", (run_id,)).fetchone()[0]
        == 0
    )
    assert {v.verdict for v in store.verdicts(run_id).values()} == {"inconclusive"}
    store.close()

    # the first round's projection at the price (prompt bytes, 48 output tokens) is 0.023 $, the
    # whole audit of 6 rounds costs 0.0231 $: this cap lets the first round and some more run
    cap = 0.024
    store, run_id = _audit(
        tmp_path / "loose", text.replace("max_cost: 0.00001", f"max_cost: {cap}")
    )
    stop = store.audit_stop(run_id)
    costs = [
        r[0]
        for r in store.db.execute(
            "SELECT cost_usd FROM calls WHERE run_id = ? AND cost_usd IS NOT NULL", (run_id,)
        )
    ]
    assert stop is not None and 0 < stop.rounds < 6, stop
    assert sum(costs) <= cap + max(costs) and stop.unpriced > 0  # `other` has no price
    lineup = parse_lineup(text)
    assert abs(project(store, run_id, lineup, lineup.audit, {}).spent_usd - sum(costs)) < 1e-9
    store.close()


def test_cli_exit_code_json_and_rerun_give_the_same_cost_table(tmp_path):
    lineup = tmp_path / "l.yaml"
    lineup.write_text(FLAT.format(cap=""))
    db = str(tmp_path / "c.db")
    r = bakeoff("audit", "-c", str(lineup), "--db", db, "--max-cost", "0.5", "--json", "-q")
    assert r.returncode == 6, r.stderr
    body = json.loads(r.stdout)
    assert body["audit_stop"]["cap_usd"] == 0.5 and body["audit_stop"]["rounds"] >= 1
    assert "stopped at its cost cap" in r.stderr and "spent of the $0.5 cap" in r.stderr
    assert set(body["cost"]) == {"ref", "twin"}
    assert body["cost"]["ref"]["greedy"]["calls"] == 2 * body["cost"]["twin"]["greedy"]["calls"]
    again = bakeoff("audit", "--rerun", body["run_id"], "--db", db, "--json", "-q")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["cost"] == body["cost"]
    assert "audit cost" in again.stderr and "$" in again.stderr
    # a bad cap is refused before any call, naming the file, line and field
    lineup.write_text(FLAT.format(cap=", max_cost: -1"))
    bad = bakeoff("audit", "-c", str(lineup), "--db", db, "-q")
    assert bad.returncode == 2 and "l.yaml:4" in bad.stderr and "max_cost" in bad.stderr
    lineup.write_text(FLAT.format(cap=""))
    zero = bakeoff("audit", "-c", str(lineup), "--db", db, "--max-cost", "0", "-q")
    assert zero.returncode == 2 and "--max-cost 0.0" in zero.stderr
