"""Dataset files read into records, each named by where it is (`file:line`): JSON Lines, a JSON
array, CSV, Parquet, a `datasets` folder, the hub. Every line and field is bounded: a file with an
endless line or a huge field is a `DatasetError` at that line, read no further than the bound."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

MAX_LINE = 8_000_000
"""Bytes (characters, in a CSV) one line of a JSONL or CSV dataset may have: a file with an endless
line is refused at that line after reading this much of it, never loaded whole."""
MAX_FIELD = 2_000_000
"""Characters one text value of a record may have (twice a prompt's limit)."""
MAX_JSON_FILE = 256_000_000
"""Bytes a `.json` array file may have (it is parsed whole; JSON Lines is read line by line)."""


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and line in the message."""


Records = list[tuple[str, dict[str, object]]]
"""(where, record): each record as its file holds it (JSON, or a CSV row's strings)."""
"""(where, record) pairs: `where` is `file:line` (or `file:row N` for columnar files)."""


def _lines(fh: IO[Any], path: Path) -> Iterator[Any]:
    """The file's lines, each read with a cap: a line longer than `MAX_LINE` is a DatasetError at
    its line, after reading no more than the cap of it."""
    n = 0
    while line := fh.readline(MAX_LINE + 1):
        n += 1
        if len(line) > MAX_LINE:
            unit = "bytes" if isinstance(line, bytes) else "characters"
            raise DatasetError(f"{path}:{n}: the line is longer than {MAX_LINE} {unit}")
        yield line


def _check_fields(rec: dict[str, object], where: str) -> None:
    """Every text value of a record (nested ones too) within `MAX_FIELD` characters."""
    stack: list[tuple[str, Any]] = list(rec.items())
    while stack:
        key, v = stack.pop()
        if isinstance(v, str) and len(v) > MAX_FIELD:
            raise DatasetError(
                f"{where}: field {key!r} has {len(v)} characters (at most {MAX_FIELD})"
            )
        if isinstance(v, dict):
            stack.extend((f"{key}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{key}[{i}]", x) for i, x in enumerate(v))


def _record(rec: object, where: str) -> tuple[str, dict[str, object]]:
    """A parsed JSON value as a record: an object, every text value within the bound."""
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: a record must be a JSON object")
    _check_fields(rec, where)
    return where, rec


def _read_jsonl(path: Path) -> Records:
    out = []
    with path.open("rb") as fh:
        for n, line in enumerate(_lines(fh, path), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON: {e}") from None
            out.append(_record(rec, f"{path}:{n}"))
    return out


def _read_json(path: Path) -> Records:
    """A `.json` file: an array of records (each named by the line it starts on), or JSON Lines."""
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith(b"["):
        return _read_jsonl(path)
    if path.stat().st_size > MAX_JSON_FILE:
        raise DatasetError(
            f"{path}:1: a JSON array of {path.stat().st_size} bytes (at most {MAX_JSON_FILE}): "
            "write it as JSON Lines (one record a line), which is read line by line"
        )
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    out: Records = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DatasetError(f"{path}: the JSON array is not closed")
        if text[pos] == "]":
            return out
        line = text.count("\n", 0, pos) + 1
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{line}: not valid JSON: {e.msg}") from None
        out.append(_record(rec, f"{path}:{line}"))


def _read_csv(path: Path) -> Records:
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(_lines(fh, path))
        try:
            for rec in reader:
                if None in rec or any(v is None for v in rec.values()):
                    raise DatasetError(f"{path}:{reader.line_num}: wrong number of columns")
                _check_fields(rec, f"{path}:{reader.line_num}")
                out.append((f"{path}:{reader.line_num}", dict(rec)))
        except csv.Error as e:  # a field over csv's own limit (131,072 characters), a stray quote
            raise DatasetError(f"{path}:{reader.reader.line_num}: {e}") from None
    return out


def _read_arrow_table(table: Any, path: Path, start: int = 0) -> Records:
    return [(f"{path}:row {start + i + 1}", rec) for i, rec in enumerate(table.to_pylist())]


def _read_parquet(path: Path) -> Records:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow (pip install 'bakeoff[parquet]')"
        ) from None
    try:
        return _read_arrow_table(pq.read_table(path), path)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable Parquet file: {e}") from None


def _read_hf_dir(path: Path, split: str | None) -> Records:
    """A directory written by `datasets.Dataset.save_to_disk` (arrow files + state.json), a
    DatasetDict directory (one such directory per split), or a folder of data files — every one
    of them, in name order (shards)."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        chosen = split or ("test" if "test" in splits else splits[0])
        if chosen not in splits:
            raise DatasetError(f"{path}: no split {chosen!r}; available: {', '.join(splits)}")
        return _read_hf_dir(path / chosen, None)
    if (path / "state.json").exists():
        try:
            import pyarrow as pa
        except ImportError:
            raise DatasetError(f"{path}: reading a datasets directory needs pyarrow") from None
        state = json.loads((path / "state.json").read_text())
        rows: Records = []
        for f in state.get("_data_files", []):
            fp = path / f["filename"]
            with pa.memory_map(str(fp)) as src:
                table = pa.ipc.open_stream(src).read_all()
            rows += _read_arrow_table(table, fp)
        return rows
    kinds = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in kinds)
    if split:
        files = [p for p in files if split in p.name or split in p.parent.name]
    if not files:
        raise DatasetError(
            f"{path}: no dataset files (state.json, *.jsonl, *.json, *.csv, *.parquet) found"
        )
    return [r for f in files for r in read_records(f)]


def _read_hub(name: str, split: str | None) -> Records:
    """`hf://org/name`: a dataset on the Hugging Face hub (online machines only)."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            f"hf://{name}: reading from the hub needs `pip install datasets`"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split or "test")
    except Exception as e:  # offline, unknown id, no such split: one line, not a traceback
        raise DatasetError(
            f"hf://{name}: cannot load it from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e)[:200]}); on an offline machine, `save_to_disk` it elsewhere and give the folder"
        ) from None
    return [(f"hf://{name}:row {i + 1}", dict(rec)) for i, rec in enumerate(ds)]


def read_records(path: Path | str, split: str | None = None) -> Records:
    """(`file:line`, record) pairs of a dataset file, a directory of shards, a glob
    (`data/train-*.parquet`: every match, in name order), or `hf://org/name` (the hub)."""
    if str(path).startswith("hf://"):
        return _read_hub(str(path)[5:], split)
    path = Path(path)
    if any(c in path.name for c in "*?[") and not path.exists():
        matches = sorted(path.parent.glob(path.name))
        if not matches:
            raise DatasetError(f"{path}: no file matches")
        return [r for m in matches for r in read_records(m, split)]
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_hf_dir(path, split)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DatasetError(
        f"{path}: unknown format (use .jsonl, .csv, .parquet or a datasets directory)"
    )
