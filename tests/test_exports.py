"""Exports read back with pandas, pyarrow and DuckDB equal what the store holds; one schema
whatever the run; the format follows the file; `bakeoff.load()` gives DataFrames."""

from __future__ import annotations

import json
import sqlite3

import pytest

import bakeoff
from conftest import bakeoff as cli

LINEUP = """
reference: ref
run: {{suites: [arith], limit: 5, probe: false}}
audit: {{budget: 10, batch: 10}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: echo}}{ref_extra}}}
  - {{name: other, provider: fake, fake: {{mode: fixed, reply: "7"{faults}}}{other_extra}}}
"""


def _run(tmp_path, name: str, *, faults: str = "", price: bool = False) -> tuple[str, str]:
    lu = tmp_path / f"{name}.yaml"
    extra = ", price: {input_per_m: 1, output_per_m: 2}" if price else ""
    # a failing endpoint's retries are kept (every attempt stored), their backoff short: the
    # default backoff slept ~25 s of this module's 40
    other = extra + (", retry: {backoff_base_s: 0.01}" if faults else "")
    lu.write_text(
        LINEUP.format(
            ref_extra=extra, other_extra=other, faults=f", faults: {{{faults}}}" if faults else ""
        )
    )
    db = str(tmp_path / f"{name}.db")
    r = cli(
        "run", "-c", str(lu), "--db", db, "--json", "--no-report", "--no-cache", "--allow-errors"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return db, json.loads(r.stdout)["run_id"]


def _store_calls(db: str) -> dict[str, dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return {r["id"]: dict(r) for r in con.execute("SELECT * FROM calls")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    db, run_id = _run(tmp, "a", price=True)
    return tmp, db, run_id


def test_calls_read_back_in_every_format_equal_the_store(run):
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    tmp, db, _ = run
    stored = _store_calls(db)
    frames = {}
    for ext in ("jsonl", "json", "csv", "parquet"):
        out = tmp / f"calls.{ext}"
        r = cli("export", "last", "--db", db, "-o", str(out))  # the format from the extension
        assert r.returncode == 0, r.stderr
        frames[ext] = {
            "jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
            "json": lambda p: pd.read_json(p, dtype=False),
            "csv": lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""]),
            "parquet": pd.read_parquet,
        }[ext](out)
        source = {
            "jsonl": f"read_json_auto('{out}')",
            "json": f"read_json_auto('{out}')",
            "csv": f"read_csv_auto('{out}')",
            "parquet": f"read_parquet('{out}')",
        }[ext]
        con = duckdb.connect()
        ids = {x for (x,) in con.execute(f"SELECT id FROM {source}").fetchall()}
        tokens = dict(con.execute(f"SELECT id, prompt_tokens FROM {source}").fetchall())
        con.close()
        assert ids == set(stored), ext
        assert all(tokens[k] == s["prompt_tokens"] for k, s in stored.items()), ext
    table = pq.read_table(tmp / "calls.parquet")
    assert table.num_rows == len(stored)
    for ext, df in frames.items():
        assert set(df["id"]) == set(stored), ext
        for _, row in df.iterrows():
            s = stored[row["id"]]
            assert row["endpoint"] == s["endpoint"] and row["suite"] == s["suite"], ext
            assert (row["output_text"] if isinstance(row["output_text"], str) else None) == (
                s["output_text"] or None
            ) or (s["output_text"] == "" and ext == "csv"), ext
            assert int(row["prompt_tokens"]) == s["prompt_tokens"], ext
            assert row["cost_usd"] == pytest.approx(s["cost_usd"]), ext
            assert row["purpose"] == ("audit" if s["suite"].startswith("fidelity.") else "suite")
    # items joined, ISO timestamps, the primary score
    pq_df = frames["parquet"]
    suite_rows = pq_df[pq_df["purpose"] == "suite"]
    assert suite_rows["prompt"].str.contains("What is").all()
    assert str(pq_df["started_at"].dtype).startswith("datetime64") and "UTC" in str(
        pq_df["started_at"].dtype
    )
    first = json.loads((tmp / "calls.jsonl").read_text().splitlines()[0])
    assert first["started_at"].endswith("+00:00") and "T" in first["started_at"]
    assert suite_rows["score"].notna().all()


def test_the_format_follows_the_file_and_a_contradiction_is_refused(run):
    tmp, db, _ = run
    r = cli("export", "last", "--db", db, "-f", "parquet", "-o", str(tmp / "x.jsonl"))
    assert r.returncode == 2 and "would lie" in r.stderr and not (tmp / "x.jsonl").exists()
    r = cli("export", "last", "--db", db, "-o", str(tmp / "x.xlsx"))
    assert r.returncode == 2 and "unknown extension" in r.stderr
    r = cli("export", "last", "--db", db, "-f", "parquet")
    assert r.returncode == 2 and "needs an output file" in r.stderr


def test_filters_and_the_summary_and_verdict_exports(run):
    tmp, db, _ = run
    stored = _store_calls(db)
    audit = cli("export", "last", "--db", db, "--purpose", "audit").stdout.splitlines()
    assert audit and all(json.loads(x)["suite"].startswith("fidelity.") for x in audit)
    assert len(audit) == sum(1 for s in stored.values() if s["suite"].startswith("fidelity."))
    one = cli("export", "last", "--db", db, "--endpoint", "other", "--suite", "arith").stdout
    rows = [json.loads(x) for x in one.splitlines()]
    assert len(rows) == 5 and {(r["endpoint"], r["suite"]) for r in rows} == {("other", "arith")}
    summary = json.loads(cli("show", "last", "--db", db, "--json").stdout)
    out = tmp / "summary.csv"
    assert cli("export", "last", "--db", db, "--what", "summary", "-o", str(out)).returncode == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 2  # endpoints × suites
    for e in summary["endpoints"]:
        row = df[df["endpoint"] == e["name"]].iloc[0]
        assert row["score"] == pytest.approx(e["suites"]["arith"]["score"])
        assert row["ci_low"] == pytest.approx(e["suites"]["arith"]["ci95"][0])
        assert row["cost_usd"] == pytest.approx(e["cost_usd"])
    v = tmp / "verdicts.json"
    assert cli("export", "last", "--db", db, "--what", "verdicts", "-o", str(v)).returncode == 0
    verdicts = json.loads(v.read_text())
    assert [(x["endpoint"], x["verdict"]) for x in verdicts] == [("other", "different")]


@pytest.mark.parametrize("what", ["summary", "verdicts"])
def test_summary_and_verdicts_read_back_in_every_format(run, what):
    import duckdb
    import pandas as pd

    tmp, db, _ = run
    summary = json.loads(cli("show", "last", "--db", db, "--json").stdout)
    if what == "summary":
        want = {(e["name"], "arith"): e["suites"]["arith"]["score"] for e in summary["endpoints"]}
    else:
        want = {
            (e["name"], "verdict"): e["fidelity"]["verdict"]
            for e in summary["endpoints"]
            if not e["reference"]
        }
    readers = {
        "jsonl": (lambda p: pd.read_json(p, lines=True), "read_json_auto"),
        "json": (lambda p: pd.read_json(p), "read_json_auto"),
        "csv": (pd.read_csv, "read_csv_auto"),
        "parquet": (pd.read_parquet, "read_parquet"),
    }
    for ext, (read, duck) in readers.items():
        out = tmp / f"{what}.{ext}"
        assert cli("export", "last", "--db", db, "--what", what, "-o", str(out)).returncode == 0
        df = read(out)
        con = duckdb.connect()
        rows = con.execute(f"SELECT * FROM {duck}('{out}')").fetchall()
        cols = [d[0] for d in con.description]
        con.close()
        assert len(df) == len(rows) == len(want), (what, ext)
        for rec in (dict(zip(cols, r, strict=True)) for r in rows):
            if what == "summary":
                assert rec["score"] == pytest.approx(want[(rec["endpoint"], rec["suite"])]), ext
            else:
                assert rec["verdict"] == want[(rec["endpoint"], "verdict")], ext


def test_the_parquet_schema_is_the_same_whatever_the_run(run, tmp_path):
    """A run without cost, with errors and empty columns has the schema of a full one."""
    import pyarrow.parquet as pq

    _, db, _ = run
    db2, _ = _run(tmp_path, "b", faults="server_error: 1.0")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert cli("export", "last", "--db", db, "-o", str(a)).returncode == 0
    assert cli("export", "last", "--db", db2, "-o", str(b)).returncode == 0
    sa, sb = pq.read_schema(a), pq.read_schema(b)
    assert sa.equals(sb), (sa, sb)
    tb = pq.read_table(b).to_pylist()
    assert any(r["status"] == "error" for r in tb) and all(r["cost_usd"] is None for r in tb)


def test_bakeoff_load_gives_dataframes(run):
    _, db, run_id = run
    data = bakeoff.load(run_id, db=db)
    assert set(data) == {"calls", "summary", "verdicts"}
    assert len(data["calls"]) == len(_store_calls(db))
    assert list(data["summary"]["endpoint"]) == ["ref", "other"]
    assert str(data["calls"]["finished_at"].dtype).startswith("datetime64")
    with pytest.raises(bakeoff.runs.ExportError, match="no database"):
        bakeoff.load("last", db=str(db) + ".missing")


def test_docs_exports_lists_every_column_in_order():
    from pathlib import Path

    from bakeoff.runs._export import CALL_COLUMNS, SUMMARY_COLUMNS, VERDICT_COLUMNS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "EXPORTS.md").read_text()
    documented = [line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")]
    assert documented == [*CALL_COLUMNS, *SUMMARY_COLUMNS, *VERDICT_COLUMNS]


def test_prompt_tokens_are_unknown_not_zero_when_the_server_sends_no_usage(tmp_path):
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [arith], limit: 3, probe: false}\n"
        "endpoints:\n  - {name: f, provider: fake, stream_usage: false}\n"
    )
    r = cli("run", "-c", str(lu), "--db", str(tmp_path / "n.db"), "--json", "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    e = json.loads(r.stdout)["endpoints"][0]
    assert e["usage_sources"] == {"chunks": 3}
    assert e["tokens"]["prompt"] is None and e["tokens"]["completion"] > 0


def test_inspect_logs_are_read_by_inspect_ai_with_our_counts_scores_and_tokens(run):
    """`-f inspect`: one eval log per endpoint × suite, written by inspect_ai's own writer; its
    reader and `evals_df` / `samples_df` see our samples, scores and tokens."""
    pytest.importorskip("inspect_ai")
    from inspect_ai.analysis import evals_df, samples_df
    from inspect_ai.log import read_eval_log

    tmp, db, _ = run
    out = tmp / "inspect"
    r = cli("export", "last", "--db", db, "-f", "inspect", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(cli("show", "last", "--db", db, "--json").stdout)
    logs = sorted(out.glob("*.eval"))
    assert len(logs) == 2  # ref, other × arith
    con = sqlite3.connect(db)
    for e in summary["endpoints"]:
        path = next(p for p in logs if f"_{e['name']}_arith" in p.name)
        log = read_eval_log(str(path))
        assert log.status == "success" and len(log.samples) == e["suites"]["arith"]["n"]
        mean = log.results.scores[0].metrics["mean"].value
        assert mean == pytest.approx(e["suites"]["arith"]["score"])
        tokens = con.execute(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM calls"
            " WHERE endpoint = ? AND suite = 'arith'",
            (e["name"],),
        ).fetchone()
        usage = next(iter(log.stats.model_usage.values()))
        assert (usage.input_tokens, usage.output_tokens) == tokens
        assert sum(next(iter(s.scores.values())).value for s in log.samples) == pytest.approx(
            e["suites"]["arith"]["score"] * e["suites"]["arith"]["n"]
        )
    import warnings

    with warnings.catch_warnings():  # inspect_ai's own pandas calls warn of pandas 4
        warnings.simplefilter("ignore")
        evals = evals_df(str(out), quiet=True)
        samples = samples_df(str(out), quiet=True)
    assert len(evals) == 2 and set(evals["total_samples"]) == {5}
    assert len(samples) == 10
    bad = cli("export", "last", "--db", db, "-f", "inspect")
    assert bad.returncode == 2 and "needs --output DIR" in bad.stderr


def test_probes_are_off_unless_asked_and_every_call_is_exported_with_its_purpose(tmp_path):
    """A lineup that does not ask for probes makes no probe call (they cost more than a small
    run's suites); one that sets `run.probe: true` gets them, and `--purpose probe` exports their
    calls, whose costs add up to the bill's `probe` part; the unfiltered export adds up to the
    whole bill."""
    import csv

    ep = "  - {name: f, provider: fake, price: {input_per_m: 1, output_per_m: 2}}\n"
    db = str(tmp_path / "p.db")
    for name, run in (("off", "{suites: [arith], limit: 3}"), ("on", "{suites: [arith], limit: 3,"
                      " probe: true, probe_max_context: 512}")):  # fmt: skip
        lu = tmp_path / f"{name}.yaml"
        lu.write_text(f"run: {run}\naudit: {{enabled: false}}\nendpoints:\n{ep}")
        r = cli("run", "-c", str(lu), "--db", db, "--json", "--no-report", "--new")
        assert r.returncode == 0, r.stderr[-2000:]
        s = json.loads(r.stdout)
        e = s["endpoints"][0]
        if name == "off":
            assert e["capabilities"] is None and "probe" not in e["bill"]["by_purpose"]
            assert "capabilities" not in r.stderr
            continue
        assert e["capabilities"] is not None and e["bill"]["by_purpose"]["probe"] > 0
        out = tmp_path / "probes.csv"
        x = cli("export", s["run_id"], "--db", db, "--purpose", "probe", "-o", str(out))
        assert x.returncode == 0, x.stderr
        with out.open() as fh:
            rows = list(csv.DictReader(fh))
        assert rows and {row["purpose"] for row in rows} == {"probe"}
        assert sum(float(row["cost_usd"] or 0) for row in rows) == pytest.approx(
            e["bill"]["by_purpose"]["probe"], abs=1e-9
        )
        every = cli("export", s["run_id"], "--db", db)
        rows = [json.loads(line) for line in every.stdout.splitlines()]
        assert {row["purpose"] for row in rows} == {"suite", "probe"}
        assert sum(row["cost_usd"] or 0 for row in rows) == pytest.approx(s["cost_usd"], abs=1e-9)


def test_inspect_logs_name_each_pinned_upstream_a_model_with_its_config_and_metrics(
    tmp_path, fake_proc
):
    """Four OpenRouter upstreams of one model are four models to inspect_ai (`evals_df`), each
    log with the generate config its requests sent and every figure of the summary."""
    pytest.importorskip("inspect_ai")
    from inspect_ai.analysis import evals_df
    from inspect_ai.log import read_eval_log

    ups = [
        {"name": n, "tag": t, "quantization": q, "context_length": 4096,
         "prompt_per_m": 0.1, "completion_per_m": 0.2}
        for n, t, q in (("Alpha", "alpha/bf16", "bf16"), ("NovitaAI", "novita/fp8", "fp8"),
                        ("Gamma", "gamma", "int4"), ("Delta", "delta", "fp8"))
    ]  # fmt: skip
    listing = tmp_path / "ups.json"
    listing.write_text(json.dumps(ups))
    server = fake_proc(
        "--persona", "openrouter", "--model", "acme/smol", "--upstreams", str(listing)
    )
    env = {"OR_TEST_KEY": "sk-or-test-0123456789"}
    lu, db, out = tmp_path / "or.yaml", str(tmp_path / "or.db"), tmp_path / "logs"
    r = cli("lineup", "openrouter", "acme/smol", "--base-url", server.url, "--key-env",
            "OR_TEST_KEY", "--suites", "arith", "-o", str(lu), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("run", "-c", str(lu), "--db", db, "--limit", "4", "--no-audit", "--json",
            "--no-report", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    r = cli("export", "last", "--db", db, "-f", "inspect", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    sent = json.loads(
        sqlite3.connect(db).execute("SELECT request_json FROM calls LIMIT 1").fetchone()[0]
    )["body"]
    models = {}
    for e in summary["endpoints"]:
        log = read_eval_log(str(next(out.glob(f"*_{e['name']}_arith.eval"))))
        models[e["name"]] = log.eval.model
        assert log.eval.model_generate_config.temperature == sent["temperature"]
        assert log.eval.model_generate_config.max_tokens == sent["max_tokens"]
        metrics = log.results.scores[0].metrics
        st = e["suites"]["arith"]
        assert metrics["mean"].value == pytest.approx(st["score"])
        assert metrics["ci95_low"].value == pytest.approx(st["ci95"][0])
        assert metrics["ci95_high"].value == pytest.approx(st["ci95"][1])
        assert metrics["errors"].value == st["errors"]
    assert models == {
        "alpha-bf16": "openrouter/alpha/bf16/acme/smol",
        "novita-fp8": "openrouter/novita/fp8/acme/smol",
        "gamma": "openrouter/gamma/acme/smol",
        "delta": "openrouter/delta/acme/smol",
    }
    import warnings

    with warnings.catch_warnings():  # inspect_ai's own pandas calls warn of pandas 4
        warnings.simplefilter("ignore")
        evals = evals_df(str(out), quiet=True)
    assert sorted(evals["model"]) == sorted(models.values())
