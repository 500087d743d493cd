"""Export a run's calls (with their scores) as JSONL, CSV or Parquet."""

from __future__ import annotations

import csv
import sys
from typing import IO, Any

import orjson

from bakeoff.store._db import Store

FORMATS = ("jsonl", "csv", "parquet")
_COLUMNS = (
    "id",
    "run_id",
    "endpoint",
    "suite",
    "item_id",
    "repeat",
    "status",
    "error_class",
    "error_detail",
    "n_attempts",
    "cached",
    "started_at",
    "finished_at",
    "http_status",
    "output_text",
    "reasoning_text",
    "finish_reason",
    "tool_calls_json",
    "prompt_tokens",
    "completion_tokens",
    "usage_source",
    "upstream",
    "response_model",
    "first_byte_ms",
    "role_ms",
    "ttft_ms",
    "last_token_ms",
    "e2e_ms",
    "request_json",
    "response_raw",
)


def _rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    scores: dict[str, dict[str, float]] = {}
    for s in store.scores(run_id):
        scores.setdefault(s["call_id"], {})[s["scorer"]] = s["value"]
    out = []
    for c in store.calls(run_id):
        row = {k: c[k] for k in _COLUMNS}
        for name, value in sorted(scores.get(c["id"], {}).items()):
            row[f"score_{name}"] = value
        out.append(row)
    return out


def export_run(store: Store, run_id: str, fmt: str, out: str | None) -> int:
    """Write the export to `out` (stdout for jsonl/csv when None). Returns the number of rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = _rows(store, run_id)
    if fmt == "parquet":
        if out is None:
            raise ValueError("parquet needs an output file: --output FILE.parquet")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(
                "parquet export needs pyarrow: pip install 'bakeoff[parquet]'"
            ) from None
        pq.write_table(pa.Table.from_pylist(rows), out)
        return len(rows)
    fh: IO[str]
    fh = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        if fmt == "jsonl":
            for r in rows:
                fh.write(orjson.dumps(r).decode() + "\n")
        else:
            fields: list[str] = list(_COLUMNS)
            for r in rows:
                fields.extend(k for k in r if k not in fields)
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    finally:
        if out:
            fh.close()
    return len(rows)
