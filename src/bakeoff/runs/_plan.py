"""Planning a run: ids, the stored run and its items, which calls an endpoint gets (`plan`), and
the lineup a stored run was made from. No call is made here."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from bakeoff._version import __version__
from bakeoff.endpoints import JsonObject
from bakeoff.lineups import Endpoint, Lineup
from bakeoff.plugins import get_suite
from bakeoff.store import HELD, Store
from bakeoff.suites import Item, Suite, as_suite


def call_id(run_id: str, endpoint: str, suite: str, item_id: str, repeat: int) -> str:
    """Deterministic call id: the same call of the same run always has the same id."""
    h = hashlib.sha256(f"{run_id}\x00{endpoint}\x00{suite}\x00{item_id}\x00{repeat}".encode())
    return h.hexdigest()[:24]


def config_hash(lineup: Lineup) -> str:
    """What a lineup asks for, as a short hash: the same lineup again finds its unfinished run.
    Fields left at their defaults are not hashed, so a new version of bakeoff that adds a field
    (with a default that keeps the old behaviour) still resumes a run an older one left. The
    content of the data it was planned from (its datasets' files, `audit.prompts`) is part of
    it: a fixed dataset starts a new run instead of resuming into a mix of two versions."""
    h = hashlib.sha256(
        orjson.dumps(
            lineup.model_dump(mode="json", exclude_defaults=True), option=orjson.OPT_SORT_KEYS
        )
    )
    paths = [ds.path for ds in lineup.datasets if not ds.path.startswith("hf://")]
    if lineup.audit.prompts:
        paths.append(lineup.audit.prompts)
    for path in paths:
        h.update(b"\x00" + data_fingerprint(path).encode())
    return h.hexdigest()[:16]


def data_fingerprint(path: str) -> str:
    """SHA-256 of a data file's bytes — of every file, by relative name, for a folder or a glob
    (a path that cannot be read: its name alone; loading it reports the error)."""
    import glob
    from pathlib import Path

    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
    if not p.is_dir():
        files = (
            [p] if p.is_file() else sorted(Path(q) for q in glob.glob(path) if Path(q).is_file())
        )
    h = hashlib.sha256(path.encode())
    for f in files:
        h.update(b"\x00" + str(f).encode() + b"\x00")
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except OSError:
            continue
    return h.hexdigest()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def api_keys(lineup: Lineup, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each endpoint's API key, from the variable its `api_key_env` names (None without one). Each
    key read is held for redaction (`store.HELD`): the command line's messages are cleaned of it."""
    env = os.environ if environ is None else environ
    keys = {ep.name: env.get(ep.api_key_env) if ep.api_key_env else None for ep in lineup.endpoints}
    HELD.add(k for k in keys.values() if k)
    return keys


def create_run(
    store: Store,
    lineup: Lineup,
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Store a new run: its lineup, endpoints and the items of every suite (generated once, here).
    The keys are known to the store before anything is written: a key pasted into a dataset is
    scrubbed from the items as from the calls."""
    store.add_secrets(k for k in api_keys(lineup, environ).values() if k)
    # every suite's items first: a dataset with a bad row leaves no run behind (a run stored
    # before it failed would later "resume" with nothing planned and pass its gates)
    items = {name: suite_items(lineup, name) for name in lineup.run.suites}
    run_id = new_run_id()
    store.create_run(
        run_id,
        config_hash=config_hash(lineup),
        lineup_json=lineup.model_dump_json(),
        source=source,
        reference=lineup.reference,
        endpoints=[ep.model_dump(mode="json") for ep in lineup.endpoints],
        version=__version__,
    )
    for name, its in items.items():
        store.add_items(run_id, name, [it.stored() for it in its])
    return run_id


@functools.lru_cache(maxsize=64)
def _dataset_suite(spec_json: str) -> object:
    from bakeoff.lineups import DatasetSpec
    from bakeoff.suites.datasets import DatasetSuite

    return DatasetSuite(DatasetSpec.model_validate_json(spec_json))


def suite_for(lineup: Lineup, name: str) -> Suite:
    """The suite a lineup means by `name`: one of its own datasets, else a registered suite."""
    for ds in lineup.datasets:
        if ds.name == name:
            return as_suite(_dataset_suite(ds.model_dump_json()))
    return as_suite(get_suite(name))


def claimed_context(ep: Endpoint) -> int | None:
    if ep.context is not None:
        return ep.context
    if ep.local is not None:
        return ep.local.n_ctx
    return None


def suite_options(lineup: Lineup, name: str) -> dict[str, object]:
    opts = dict(lineup.run.suite_options.get(name, {}))
    if name == "long-context" and "max_context" not in opts:
        claims = [c for c in map(claimed_context, lineup.endpoints) if c]
        opts["max_context"] = max(claims) if claims else 4096
    return opts


def suite_items(lineup: Lineup, name: str) -> list[Item]:
    """The items of a suite for this lineup (its seed, limit and the suite's options)."""
    suite = suite_for(lineup, name)
    opts = suite_options(lineup, name)
    try:
        return list(suite.items(seed=lineup.run.seed, n=lineup.run.limit, **opts))
    except TypeError as e:
        if not opts:
            raise
        raise ValueError(f"suite {name!r} does not take the options {sorted(opts)}: {e}") from None


def fits(ep: Endpoint, item: Item) -> bool:
    """Whether an item is within what the endpoint claims (long-context items beyond its context
    are not sent to it)."""
    need = item.meta.get("context_tokens")
    claim = claimed_context(ep)
    return need is None or claim is None or need <= claim


def lineup_of_run(store: Store, run_id: str) -> Lineup:
    row = store.run(run_id)
    if row is None:
        raise KeyError(run_id)
    return Lineup.model_validate_json(row["lineup_json"])


@dataclass
class Job:
    """One call to make: an item of a suite, the repeat index, optional body overrides."""

    id: str
    suite: str
    item: Item
    repeat: int
    params: JsonObject = field(default_factory=dict)
    """A regime's extras over the item's body fields (the audit's)."""
    stream: bool | None = None
    """Override the endpoint's `stream` (the audit asks without streaming, to get usage)."""


def plan(store: Store, run_id: str, lineup: Lineup) -> dict[str, list[Job]]:
    """Every call of the run that has no stored success, per endpoint."""
    done = store.succeeded_call_ids(run_id)
    items: dict[str, list[Item]] = {}
    for row in store.items(run_id):
        items.setdefault(row["suite"], []).append(Item.from_stored(row))
    if lineup.run.stop_when is not None:  # a random sample first: stopping early is unbiased
        for suite, its in items.items():
            random.Random(f"{lineup.run.seed}:{suite}").shuffle(its)
    out: dict[str, list[Job]] = {}
    for ep in lineup.endpoints:
        jobs = []
        for suite in lineup.run.suites:
            for it in items.get(suite, []):
                if not fits(ep, it):
                    continue
                for r in range(lineup.run.repeats):
                    cid = call_id(run_id, ep.name, suite, it.id, r)
                    if cid not in done:
                        jobs.append(Job(cid, suite, it, r))
        out[ep.name] = jobs
    return out


def planned_calls(
    store: Store, run_id: str, lineup: Lineup, endpoint: str, items: list[Item] | None = None
) -> int:
    """Suite calls planned for an endpoint: every item that fits its claimed context, × repeats.
    `items`: the run's suite items, when the caller has them already."""
    ep = lineup.endpoint(endpoint)
    if items is None:
        items = suite_items_of_run(store, run_id, lineup)
    return sum(fits(ep, it) for it in items) * lineup.run.repeats


def suite_items_of_run(store: Store, run_id: str, lineup: Lineup) -> list[Item]:
    return [Item.from_stored(r) for r in store.items(run_id) if r["suite"] in lineup.run.suites]
