"""Exports a user can load anywhere: a run's calls, summary or verdicts as JSONL, JSON, CSV or
Parquet, in one documented schema whatever the run (`CALL_COLUMNS`, `SUMMARY_COLUMNS`,
`VERDICT_COLUMNS`), and `load()` for DataFrames.

- The format comes from the file's extension (`.jsonl`, `.json`, `.csv`, `.parquet`); a `--format`
  that contradicts it is refused, not obeyed.
- Calls carry their item (prompt text, target, tier), their purpose (`suite` or `audit`), their
  primary score and pass/fail (every score in `scores_json`), and ISO 8601 UTC timestamps. The
  calls made beside them (`probe`, `judge`, `arena-judge`) are rows too, with what is stored of
  them: status, error class, tokens, cost, upstream and start time.
- A CSV cell (text) that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is written
  after a single quote (OWASP's advice against formula injection: a reply
  `=HYPERLINK(...)` opened in a spreadsheet stays text); a plain number (`-5`, `+1.5e3`) is written
  as it is. JSONL, JSON and Parquet carry every value unchanged.
- Parquet columns are typed from the schema, never from the values: a run with no tool call, cost
  or error has the same schema as one with all of them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from bakeoff.lineups import purposes
from bakeoff.runs._summary import summary_of
from bakeoff.store import Store, loads

if TYPE_CHECKING:
    import pandas

Row = dict[str, object]
"""One row of an exported table, column → value as written (the columns: `CALL_COLUMNS`, ...)."""

FORMATS = ("jsonl", "json", "csv", "parquet")
WHAT = ("calls", "summary", "verdicts")
PURPOSES = ("suite", "audit", "probe", "judge", "arena-judge", "preflight")
"""A call's purpose: a suite's or the audit's (`calls`), or a call made beside them whose bill is
kept (`side_calls`): a capability probe's, an LLM judge's, the arena judge's, the one-token
preflight call's."""

# column → type: str, int, float, bool, time (ISO text; a UTC timestamp in Parquet)
CALL_COLUMNS: dict[str, str] = {
    "id": "str",
    "run_id": "str",
    "endpoint": "str",
    "suite": "str",
    "purpose": "str",
    "item_id": "str",
    "repeat": "int",
    "tier": "str",
    "prompt": "str",
    "target_json": "str",
    "status": "str",
    "error_class": "str",
    "error_detail": "str",
    "n_attempts": "int",
    "cached": "bool",
    "started_at": "time",
    "finished_at": "time",
    "http_status": "int",
    "output_text": "str",
    "reasoning_text": "str",
    "finish_reason": "str",
    "tool_calls_json": "str",
    "prompt_tokens": "int",
    "completion_tokens": "int",
    "cached_tokens": "int",
    "usage_source": "str",
    "cost_usd": "float",
    "cost_source": "str",
    "upstream": "str",
    "pinned_upstream": "str",
    "response_model": "str",
    "first_byte_ms": "float",
    "role_ms": "float",
    "ttft_ms": "float",
    "last_token_ms": "float",
    "e2e_ms": "float",
    "score": "float",
    "passed": "bool",
    "scores_json": "str",
    "request_json": "str",
    "response_raw": "str",
}
"""One row per stored call. `score`/`passed`: the suite's primary score; `scores_json`: every
score as {scorer: value}; `prompt`: the item's last user message (or its completion prompt)."""

SUMMARY_COLUMNS: dict[str, str] = {
    "run_id": "str",
    "endpoint": "str",
    "reference": "bool",
    "suite": "str",
    "score": "float",
    "ci_low": "float",
    "ci_high": "float",
    "ci_method": "str",
    "n": "int",
    "n_items": "int",
    "errors": "int",
    "error_rate": "float",
    "delta_vs_reference": "float",
    "p_holm": "float",
    "significant": "bool",
    "verdict": "str",
    "ttft_p50_ms": "float",
    "output_tok_s_p50": "float",
    "cost_usd": "float",
}
"""One row per endpoint × suite, with the endpoint's verdict, speed and bill repeated."""

VERDICT_COLUMNS: dict[str, str] = {
    "run_id": "str",
    "endpoint": "str",
    "verdict": "str",
    "claim": "str",
    "p_value": "float",
    "calls": "int",
    "why": "str",
    "evidence_json": "str",
}


class ExportError(ValueError):
    """An export that cannot be written as asked; the message says why."""


def format_for(path: str | None, fmt: str | None) -> str:
    """The format of an export: the extension's, which a given `fmt` must agree with."""
    ext = Path(path).suffix.lower().lstrip(".") if path else ""
    if ext and ext not in FORMATS:
        raise ExportError(f"{path}: unknown extension .{ext}; use one of .{', .'.join(FORMATS)}")
    if fmt is not None and fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt and ext and fmt != ext:
        raise ExportError(f"--format {fmt} but {path} is .{ext}: the file would lie; pick one")
    chosen = fmt or ext or "jsonl"
    if chosen == "parquet" and not path:
        raise ExportError("parquet needs an output file: --output FILE.parquet")
    return chosen


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(float(t), tz=dt.UTC).isoformat(timespec="milliseconds")


def _prompt(input_json: str | None) -> str | None:
    if not input_json:
        return None
    inp = loads(input_json)
    for m in reversed(inp.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            return None if c is None else str(c)
    p = inp.get("prompt")
    return None if p is None else str(p)


def call_rows(
    store: Store,
    run_id: str,
    *,
    suites: Iterable[str] = (),
    endpoints: Iterable[str] = (),
    purpose: str | None = None,
) -> list[Row]:
    """The run's calls as `CALL_COLUMNS` rows, filtered."""
    want_suites, want_eps = set(suites), set(endpoints)
    items = {(r["suite"], r["item_id"]): r for r in store.items(run_id)}
    by_call: dict[str, list[Any]] = {}
    for s in store.scores(run_id):
        by_call.setdefault(s["call_id"], []).append(s)
    out = []
    for c in store.calls(run_id):
        kind = "audit" if c["suite"].startswith(purposes.FIDELITY_PREFIX) else "suite"
        if (want_suites and c["suite"] not in want_suites) or (
            want_eps and c["endpoint"] not in want_eps
        ):
            continue
        if purpose and kind != purpose:
            continue
        item = items.get((c["suite"], c["item_id"]))
        scores = by_call.get(c["id"], [])
        first = scores[0] if scores else None
        have = set(c.keys())  # a sqlite3.Row: `in` would test its values
        row = {k: c[k] if k in have else None for k in CALL_COLUMNS}
        row.update(
            purpose=kind,
            tier=item["tier"] if item is not None else None,
            prompt=_prompt(item["input_json"]) if item is not None else None,
            target_json=item["target_json"] if item is not None else None,
            cached=bool(c["cached"]),
            started_at=_iso(c["started_at"]),
            finished_at=_iso(c["finished_at"]),
            score=None if first is None else first["value"],
            passed=None if first is None or first["passed"] is None else bool(first["passed"]),
            scores_json=orjson.dumps({s["scorer"]: s["value"] for s in scores}).decode()
            if scores
            else None,
        )
        out.append(row)
    if not want_suites:
        out += side_call_rows(store, run_id, endpoints=want_eps, purpose=purpose)
    return out


def side_call_rows(
    store: Store, run_id: str, *, endpoints: set[str], purpose: str | None
) -> list[Row]:
    """The run's probe and judge calls as `CALL_COLUMNS` rows: what `side_calls` holds of them
    (their bill), the other columns empty."""
    out = []
    for c in store.side_calls(run_id):
        if (endpoints and c["endpoint"] not in endpoints) or (purpose and c["purpose"] != purpose):
            continue
        row: Row = dict.fromkeys(CALL_COLUMNS)
        row.update(
            {k: c[k] for k in set(c.keys()) & set(CALL_COLUMNS) if k not in ("id", "started_at")},
            id=f"side-{c['id']}",
            cached=False,
            started_at=_iso(c["started_at"]),
        )
        out.append(row)
    return out


def summary_rows(
    store: Store, run_id: str, *, suites: Iterable[str] = (), endpoints: Iterable[str] = ()
) -> list[Row]:
    """The summary as `SUMMARY_COLUMNS` rows: one per endpoint × suite."""
    want_suites, want_eps = set(suites), set(endpoints)
    s = summary_of(store, run_id)
    out = []
    for e in s.endpoints:
        if want_eps and e.name not in want_eps:
            continue
        for suite, st in e.suites.items():
            if want_suites and suite not in want_suites:
                continue
            vs = st.vs_reference
            out.append(
                {
                    "run_id": run_id,
                    "endpoint": e.name,
                    "reference": e.reference,
                    "suite": suite,
                    "score": st.score,
                    "ci_low": st.ci95[0],
                    "ci_high": st.ci95[1],
                    "ci_method": st.ci_method,
                    "n": st.n,
                    "n_items": st.n_items,
                    "errors": st.errors,
                    "error_rate": st.error_rate,
                    "delta_vs_reference": vs.delta if vs else None,
                    "p_holm": vs.p_holm if vs else None,
                    "significant": vs.significant if vs else None,
                    "verdict": e.fidelity.verdict if e.fidelity else None,
                    "ttft_p50_ms": e.ttft_ms.p50,
                    "output_tok_s_p50": e.output_tok_s.p50,
                    "cost_usd": e.cost_usd,
                }
            )
    return out


def verdict_rows(store: Store, run_id: str, *, endpoints: Iterable[str] = ()) -> list[Row]:
    want = set(endpoints)
    out = []
    for name, v in sorted(store.verdicts(run_id).items()):
        if want and name not in want:
            continue
        stated = v.to_json()
        evidence = {
            k: x for k, x in stated.items() if k not in ("verdict", "p_value", "claim", "why")
        }
        out.append(
            {
                "run_id": run_id,
                "endpoint": name,
                "verdict": v.verdict,
                "claim": v.claim,
                "p_value": v.p_value,
                "calls": stated.get("calls"),
                "why": v.why,
                "evidence_json": orjson.dumps(evidence, option=orjson.OPT_NON_STR_KEYS).decode(),
            }
        )
    return out


def _arrow_schema(columns: dict[str, str]) -> Any:
    import pyarrow as pa

    kinds = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "time": pa.timestamp("ms", tz="UTC"),
    }
    return pa.schema([(k, kinds[t]) for k, t in columns.items()])


def _parquet(rows: list[Row], columns: dict[str, str], out: str) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("parquet export needs pyarrow: pip install 'bakeoff[parquet]'") from None
    times = [k for k, t in columns.items() if t == "time"]
    typed = [{**r, **{k: _time(r[k]) for k in times}} for r in rows]
    pq.write_table(pa.Table.from_pylist(typed, schema=_arrow_schema(columns)), out)


def _time(v: object) -> dt.datetime | None:
    """A time column's ISO text as a datetime (empty: None)."""
    return dt.datetime.fromisoformat(v) if isinstance(v, str) and v else None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_rows(rows: list[Row], columns: dict[str, str], fmt: str, out: str | None) -> None:
    """Write rows in `columns` order as `fmt` to `out` (stdout when None, except Parquet)."""
    rows = [{k: r.get(k) for k in columns} for r in rows]
    if fmt == "parquet":
        assert out is not None
        _parquet(rows, columns, out)
        return
    fh: IO[str] = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        if fmt == "jsonl":
            for r in rows:
                fh.write(orjson.dumps(r).decode() + "\n")
        elif fmt == "json":
            fh.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(columns))
            w.writeheader()
            w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
            fh.write(buf.getvalue())
    finally:
        if out:
            fh.close()


def export(
    store: Store,
    run_id: str,
    *,
    what: str = "calls",
    fmt: str | None = None,
    out: str | None = None,
    suites: Iterable[str] = (),
    endpoints: Iterable[str] = (),
    purpose: str | None = None,
) -> int:
    """Write one export of a run; the number of rows written."""
    if what not in WHAT:
        raise ExportError(f"unknown export {what!r}; choose one of {', '.join(WHAT)}")
    if purpose is not None and purpose not in PURPOSES:
        raise ExportError(f"unknown purpose {purpose!r}; choose one of {', '.join(PURPOSES)}")
    chosen = format_for(out, fmt)
    if what == "calls":
        rows = call_rows(store, run_id, suites=suites, endpoints=endpoints, purpose=purpose)
        columns = CALL_COLUMNS
    elif what == "summary":
        rows, columns = (
            summary_rows(store, run_id, suites=suites, endpoints=endpoints),
            SUMMARY_COLUMNS,
        )
    else:
        rows, columns = verdict_rows(store, run_id, endpoints=endpoints), VERDICT_COLUMNS
    write_rows(rows, columns, chosen, out)
    return len(rows)


def load(run: str = "last", db: str | Path | None = None) -> dict[str, pandas.DataFrame]:
    """A run as pandas DataFrames — `calls`, `summary`, `verdicts` — typed by the export schema
    (timestamps as UTC datetimes). Needs pandas."""
    try:
        import pandas as pd
    except ImportError:
        raise ExportError("bakeoff.load needs pandas: pip install 'bakeoff[pandas]'") from None
    from bakeoff.store import database_exists, default_db_path, redact

    path = str(db or default_db_path())
    if not database_exists(path):  # a read never leaves an empty database behind
        raise ExportError(f"no database at {redact(path)}")
    store = Store(path)
    try:
        row = store.find_run(run)
        if row is None:
            raise ExportError(f"no run {run!r} in {store.path}")
        rid = row["id"]
        tables = {
            "calls": (call_rows(store, rid), CALL_COLUMNS),
            "summary": (summary_rows(store, rid), SUMMARY_COLUMNS),
            "verdicts": (verdict_rows(store, rid), VERDICT_COLUMNS),
        }
    finally:
        store.close()
    out = {}
    for name, (rows, columns) in tables.items():
        df = pd.DataFrame(rows, columns=list(columns))
        for k, t in columns.items():
            if t == "time":
                df[k] = pd.to_datetime(df[k], utc=True)
        out[name] = df
    return out
