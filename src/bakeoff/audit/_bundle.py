"""Evidence a provider can re-check: an audit as one file, and its verdicts recomputed from it alone.

`bakeoff audit bundle RUN -o audit.tar.gz` writes the run's audit — its prompts and seed, every
fidelity call as stored (the request sent, the raw reply, the text), the applied settings, the
scorers' identities and every number they gave, the verdicts — with a manifest of SHA-256 hashes.
`bakeoff audit verify audit.tar.gz` checks every hash, rebuilds the prompts from the seed, checks
that each call sent its prompt, and recomputes every verdict with the same code (`analyse`) from
the bundle alone: no call, no database, no model file. One changed byte fails it: in a file, the
file's hash; in the manifest, the bundle's hash (`root`, printed by both — publish it).

Commit–reveal: `bakeoff audit seed` draws a seed and prints its commitment, SHA-256 of
`bakeoff-audit-seed:<seed>`. Publish the commitment before the audit, run it with `audit.seed`,
reveal the seed with the bundle; `verify --commitment HASH` checks that the prompts follow from the
seed committed to before any provider saw them.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bakeoff.audit._errors import AuditError
from bakeoff.audit._source import CallSource, JsonRow, row_dict
from bakeoff.lineups import AuditSettings
from bakeoff.store import Store, Verdict

if TYPE_CHECKING:
    from bakeoff.audit._types import ScorerLoad

FORMAT = 1
FILES = (
    "bundle.json",
    "lineup.json",
    "analysis.json",
    "prompts.jsonl",
    "calls.jsonl",
    "suite_checks.json",
    "scorer_answers.jsonl",
)
MANIFEST = "MANIFEST.json"
MAX_BYTES = 4 << 30
"""The most a bundle may unpack to (verify reads it into memory)."""


def commitment(seed: int) -> str:
    """What to publish before an audit run with `seed`: SHA-256 of `bakeoff-audit-seed:<seed>`."""
    return hashlib.sha256(f"bakeoff-audit-seed:{seed}".encode()).hexdigest()


def _dump(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _jsonl(rows: list[Any]) -> bytes:
    return b"".join(_dump(r) + b"\n" for r in rows)


def write_bundle(store: Store, run_id: str, out: Path) -> str:
    """Write the run's audit bundle to `out` (a .tar.gz); returns its root hash."""
    from bakeoff._version import __version__
    from bakeoff.audit._analysis import SUITES
    from bakeoff.audit._audit import RUN_ANALYSIS

    run = store.run(run_id)
    analysis = store.analysis(run_id, RUN_ANALYSIS)
    if run is None or analysis is None or analysis["verdicts"] is None:
        raise AuditError(
            f"run {run_id} has no stored audit analysis to bundle (audited before bakeoff kept "
            "them? `bakeoff audit --rerun` it with its scorer at hand first)"
        )
    suites = set(SUITES.values())
    items = [row_dict(r) for s in sorted(suites) for r in store.items(run_id, s)]
    calls = [row_dict(c) for c in store.calls(run_id) if c["suite"] in suites]
    from bakeoff.runs import lineup_of_run

    eps = tuple(e.name for e in lineup_of_run(store, run_id).endpoints)
    checks = {
        "tool_calls": [row_dict(r) for r in store.tool_calls(run_id, eps)],
        "truncation_suspected": store.score_sums(run_id, "truncation_suspected", eps),
    }
    answers = [
        {"scorer": role, "key": k, "answer": a}
        for role in store.scorer_roles(run_id)
        for k, a in sorted(store.scorer_answers(run_id, role).items())
    ]
    seed = analysis["settings"].get("seed")
    meta = {
        "format": FORMAT,
        "run_id": run_id,
        "bakeoff_version": __version__,
        "seed": seed,
        "commitment": commitment(seed) if seed is not None else None,
    }
    content = {
        "bundle.json": _dump(meta),
        "lineup.json": run["lineup_json"].encode(),
        "analysis.json": _dump(analysis),
        "prompts.jsonl": _jsonl(items),
        "calls.jsonl": _jsonl(calls),
        "suite_checks.json": _dump(checks),
        "scorer_answers.jsonl": _jsonl(answers),
    }
    manifest = _dump({n: hashlib.sha256(b).hexdigest() for n, b in content.items()})
    content[MANIFEST] = manifest
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in (MANIFEST, *FILES):
            info = tarfile.TarInfo(name)
            info.size = len(content[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content[name]))
    tmp.replace(out)
    return hashlib.sha256(manifest).hexdigest()


@dataclass
class Verification:
    """What `verify_bundle` found: `problems` empty means every check passed."""

    root: str | None = None
    run_id: str | None = None
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read(path: Path, v: Verification) -> dict[str, bytes] | None:
    """The bundle's files (regular files with the expected names only; anything else refused)."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if not m.isfile() or m.name not in (MANIFEST, *FILES) or m.name in files:
                    v.problems.append(f"unexpected member {m.name!r} in the bundle")
                    return None
                total += m.size
                if total > MAX_BYTES:
                    v.problems.append("the bundle unpacks to more than 4 GiB")
                    return None
                f = tar.extractfile(m)
                assert f is not None
                files[m.name] = f.read()
    except (OSError, tarfile.TarError, EOFError) as e:
        v.problems.append(f"cannot read {path} as a .tar.gz: {e}")
        return None
    missing = [n for n in (MANIFEST, *FILES) if n not in files]
    if missing:
        v.problems.append(f"missing from the bundle: {', '.join(missing)}")
        return None
    return files


def verify_bundle(path: Path, *, expected_commitment: str | None = None) -> Verification:
    """Check a bundle and recompute its verdicts from it alone (see the module docstring)."""
    v = Verification()
    files = _read(path, v)
    if files is None:
        return v
    v.root = hashlib.sha256(files[MANIFEST]).hexdigest()
    try:
        manifest = orjson.loads(files[MANIFEST])
    except orjson.JSONDecodeError:
        v.problems.append("MANIFEST.json is not JSON")
        return v
    for name in FILES:
        if manifest.get(name) != hashlib.sha256(files[name]).hexdigest():
            v.problems.append(f"{name}: its SHA-256 is not the manifest's (the file was changed)")
    if v.problems:
        return v
    v.checked.append(f"the SHA-256 of all {len(FILES)} files")
    try:
        _recompute(files, v, expected_commitment)
    except (AuditError, ValueError, KeyError, TypeError) as e:
        v.problems.append(f"cannot recompute the verdicts: {e}")
    return v


def _recompute(files: dict[str, bytes], v: Verification, expected: str | None) -> None:
    from bakeoff.audit._analysis import analyse
    from bakeoff.audit._audit import stated
    from bakeoff.audit._stored import StoredScorer
    from bakeoff.lineups import Lineup
    from bakeoff.suites import Item

    meta = orjson.loads(files["bundle.json"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"bundle format {meta.get('format')!r}, this bakeoff reads {FORMAT}")
    run_id = v.run_id = meta["run_id"]
    analysis = orjson.loads(files["analysis.json"])
    settings = AuditSettings.model_validate(analysis["settings"])
    lineup = Lineup.model_validate_json(files["lineup.json"])
    item_rows = _lines(files["prompts.jsonl"])
    calls = _lines(files["calls.jsonl"])
    _check_seed(meta, settings, item_rows, v, expected)
    _check_requests(item_rows, calls, v)
    items: dict[str, list[Item]] = {}
    for r in item_rows:
        items.setdefault(r["suite"].split(".", 1)[1], []).append(Item.from_stored(r))
    answers: dict[str, dict[str, object]] = {}
    for a in _lines(files["scorer_answers.jsonl"]):
        answers.setdefault(a["scorer"], {})[a["key"]] = a["answer"]

    def replay(role: str) -> ScorerLoad:
        s = StoredScorer(None, run_id, role, None, answers=answers.get(role, {}))
        return lambda: s

    used = analysis.get("scorers")  # answers of another analysis (--set scorer=local) not replayed
    own_ref = "reference" in answers and (used is None or "reference" in used)
    scorer = replay("reference") if own_ref else None
    alts = {
        name: replay(f"alt:{name}")
        for name in settings.alternatives or []
        if f"alt:{name}" in answers
    }
    source = CallSource(calls, orjson.loads(files["suite_checks.json"]))
    try:
        fresh = analyse(source, run_id, lineup, settings, items, scorer, alternatives=alts)
    except AuditError:
        v.problems.append(
            "a reply in the bundle has no stored scorer answer: the audit's scorer never saw it "
            "(changed after the audit?)"
        )
        return
    v.verdicts = fresh
    now_stated, was_stated = stated(fresh), analysis["verdicts"]
    for ep in sorted(set(was_stated) | set(now_stated)):
        if was_stated.get(ep) != now_stated.get(ep):
            was = (was_stated.get(ep) or {}).get("claim")
            now = fresh[ep].claim if ep in fresh else None
            v.problems.append(
                f"{ep}: the verdict recomputed from the bundle is not the one it states "
                f"({now!r} vs {was!r})"
            )
    if not v.problems:
        v.checked.append(f"{len(fresh)} verdicts recomputed from {len(calls)} calls: identical")


def _lines(b: bytes) -> list[Any]:
    return [orjson.loads(line) for line in b.splitlines() if line.strip()]


def _check_seed(
    meta: dict[str, object],
    settings: AuditSettings,
    item_rows: list[JsonRow],
    v: Verification,
    expected: str | None,
) -> None:
    from bakeoff.suites.fidelity import audit_items

    seed = settings.seed
    if seed is None or meta.get("seed") != seed:
        v.problems.append("the bundle's seed is not the analysis's")
        return
    if meta.get("commitment") != commitment(seed):
        v.problems.append("the stated commitment is not the seed's hash")
    if expected is not None:
        if commitment(seed) != expected.strip().lower():
            v.problems.append("the seed does not match the published commitment")
        else:
            v.checked.append("the seed matches the published commitment")
    if settings.prompts is not None:
        v.checked.append("prompts from the user's own file (not rebuilt from the seed)")
        return
    for suite in sorted({_text(r, "suite") for r in item_rows}):
        rows = [r for r in item_rows if r["suite"] == suite]
        regime = suite.split(".", 1)[1]
        want = audit_items(regime, settings, seed=seed, n=len(rows))
        got = [_messages(r) for r in rows]
        if got != [it.messages for it in want]:
            v.problems.append(f"{suite}: the prompts do not follow from the seed")
            return
    v.checked.append("every prompt rebuilt from the seed")


def _check_requests(item_rows: list[JsonRow], calls: list[JsonRow], v: Verification) -> None:
    """Each call's stored request carried its item's prompt (what was sent is what is judged)."""
    prompts = {(r["suite"], r["item_id"]): _messages(r) for r in item_rows}
    bad = 0
    for c in calls:
        req = orjson.loads(_text(c, "request_json")) if c.get("request_json") else {}
        body = req.get("body") if isinstance(req, dict) and "body" in req else req
        sent = body.get("messages") if isinstance(body, dict) else None
        if sent != prompts.get((c["suite"], c["item_id"])):
            bad += 1
    if bad:
        v.problems.append(f"{bad} calls' stored requests do not carry their item's prompt")
    else:
        v.checked.append(f"every call's request carried its prompt ({len(calls)} calls)")


def _text(row: JsonRow, column: str) -> str:
    """A text column of a row read from the bundle (refused when it is not text)."""
    value = row[column]
    if not isinstance(value, str):
        raise ValueError(f"a row's {column} in the bundle is not text")
    return value


def _messages(item_row: JsonRow) -> object:
    """The chat messages an item's stored input holds."""
    item_input = orjson.loads(_text(item_row, "input_json"))
    return item_input.get("messages") if isinstance(item_input, dict) else None
