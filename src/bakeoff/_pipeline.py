"""The pipeline as a library call: `bakeoff.run(lineup)` does what `bakeoff run` does — resume or
create the run, the suites, the capability probes, the fidelity audit, the report — and returns the
typed summary that `bakeoff run --json` prints. The CLI is a shell over it (options, progress bars,
tables, exit codes).

    import bakeoff
    summary = bakeoff.run("lineup.yaml", db="results.db")
    for ep in summary.endpoints:
        print(ep.name, ep.suites["arith"].score, ep.fidelity and ep.fidelity.claim)

`arun` is the same as a coroutine, for code that already runs an event loop (a notebook cell can
`await bakeoff.arun(...)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the preflight over the wire and the pipeline's error, re-exported: callers import the
# pipeline's steps from here
from bakeoff._preflight import PREFLIGHT_PROMPT as PREFLIGHT_PROMPT
from bakeoff._preflight import Log as Log
from bakeoff._preflight import RunError as RunError
from bakeoff._preflight import check_endpoints as check_endpoints
from bakeoff.lineups import FieldProblems, Lineup, LineupError, keys, missing_env
from bakeoff.plugins import UnknownPluginError, get_provider, load, resolve_lineup
from bakeoff.runs import (
    EndpointProgress,
    RunOptions,
    RunSummary,
    config_hash,
    create_run,
    execute,
    lineup_of_run,
    suite_for,
    summary_of,
)
from bakeoff.store import Store, StoreError
from bakeoff.suites.datasets import DatasetError


def preflight(lineup: Lineup, *, unsafe_code: bool = False, log: Log | None = None) -> None:
    """Everything that would stop the run, checked before any call: the suites and providers
    exist, every key variable is set, model-written code has its sandbox (or `unsafe_code`), the
    local model is installed."""
    try:
        for s in lineup.run.suites:
            suite_for(lineup, s)
        for ep in lineup.endpoints:
            get_provider(ep.provider)
    except (UnknownPluginError, DatasetError) as e:
        raise RunError(str(e)) from None
    check_planned(lineup)
    check_env(lineup, log)
    check_sandbox(lineup, unsafe_code, log)
    check_local(lineup)


def check_planned(lineup: Lineup) -> None:
    """The lineup plans calls, and its datasets read whole (a bad row is reported with its file
    and line before a run is stored: a run left behind would "resume" with nothing planned)."""
    from bakeoff.runs import suite_items

    n = 0
    for ds in lineup.datasets:
        if ds.name in lineup.run.suites:
            try:
                n += len(suite_items(lineup, ds.name))
            except (DatasetError, ValueError) as e:
                raise RunError(str(e)) from None
    builtin = [s for s in lineup.run.suites if not any(d.name == s for d in lineup.datasets)]
    audits = lineup.audit.enabled and lineup.reference is not None and len(lineup.endpoints) > 1
    if not (n or builtin or audits or lineup.run.probe) or not lineup.endpoints:
        raise RunError(
            "the lineup plans no call: no suite item, no audit (it needs a `reference` and a "
            "second endpoint) and no probe (`run.probe`) — nothing would be measured"
        )


def record_preflight(store: Store, run_id: str, lineup: Lineup, calls: list[Any]) -> None:
    """Keep the one-token preflight calls' bills with the run (`side_calls`, purpose
    `preflight`): their `usage.cost`, else their tokens at the endpoint's `price`."""
    from bakeoff.store import SideCallRecord

    for c in calls:
        ep = lineup.endpoint(c.endpoint)
        cost, source = c.cost_usd, "usage" if c.cost_usd is not None else None
        if cost is None and ep.price is not None and c.prompt_tokens is not None:
            out = c.completion_tokens or 0
            cost = (c.prompt_tokens * ep.price.input_per_m + out * ep.price.output_per_m) / 1e6
            source = "price"
        store.record_side_call(
            SideCallRecord(
                run_id=run_id,
                endpoint=c.endpoint,
                purpose="preflight",
                started_at=c.started_at,
                status="ok" if c.ok else "error",
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                cost_usd=cost,
                cost_source=source,
            )
        )


def check_env(lineup: Lineup, log: Log | None = None) -> None:
    """Every key variable is one the lineup may send (`lineups.keys`: an LLM API key's name, the
    preset's own, or one the user allowed) and is set; `log` is told which variable goes to which
    host."""
    allowed = keys.allowed_variables()
    problems = []
    for ep in lineup.endpoints:
        if not ep.api_key_env:
            continue
        try:
            default = getattr(get_provider(ep.provider), "default_key_env", None)
        except UnknownPluginError:
            default = None
        problem = keys.key_variable_problem(ep.api_key_env, default=default, allowed=allowed)
        if problem:
            problems.append(f"endpoint {ep.name!r}: {problem}")
    problems += missing_env(lineup)
    if problems:
        raise RunError("no call was made:\n  " + "\n  ".join(problems))
    for ep in lineup.endpoints:
        if ep.api_key_env and log:
            log(f"key: endpoint {ep.name!r} sends {ep.api_key_env} to {_host(ep)}")


def _host(ep: Any) -> str:
    from urllib.parse import urlsplit

    if not ep.base_url:
        return f"the server bakeoff starts for it (provider {ep.provider})"
    try:
        return urlsplit(ep.base_url).netloc or ep.base_url
    except ValueError:
        return str(ep.base_url)


def check_sandbox(lineup: Lineup, unsafe_code: bool, log: Log | None = None) -> None:
    """Suites that run model-written code need the bubblewrap sandbox: refused before any call
    without it, unless `unsafe_code` (then they run unisolated, and the summary says so)."""
    try:
        needs = [s for s in lineup.run.suites if suite_for(lineup, s).runs_model_code]
    except (UnknownPluginError, DatasetError) as e:
        raise RunError(str(e)) from None
    if not needs:
        return
    from bakeoff.sandbox import isolation_problem, permit_unisolated, refusal

    problem = isolation_problem()
    if problem is None:
        return
    if not unsafe_code:
        raise RunError(f"no call was made: {', '.join(needs)}: {refusal(problem)}")
    permit_unisolated()
    if log:
        log(
            f"warning: {', '.join(needs)}: model-written code will run UNISOLATED "
            f"(unsafe_code): {problem}"
        )


def check_local(lineup: Lineup) -> None:
    if any(ep.provider == "local" for ep in lineup.endpoints):
        from bakeoff.local import AssetError, source_model

        try:
            source_model()
        except AssetError as e:
            raise RunError(str(e)) from None


def prepare(
    store: Store,
    lineup: Lineup | str | Path | None = None,
    *,
    resume: str | None = None,
    new: bool = False,
    unsafe_code: bool = False,
    source: str | None = None,
    checked: bool = False,
    log: Log | None = None,
) -> tuple[str, Lineup]:
    """Resume or create: the run to execute and its lineup. `resume` names a stored run; else an
    unfinished run of the same lineup is resumed (unless `new`), or a new one is created.
    `source`: the lineup file's path, stored with the run (set when `lineup` is a path);
    `checked`: `preflight` already passed."""
    if resume is not None:
        row = store.find_run(resume)
        if row is None:
            raise RunError(f"no run {resume!r} in {store.path}")
        if row["status"] == "complete" and log:
            log(f"run {row['id']} is already complete; nothing to resume")
        lineup = lineup_of_run(store, row["id"])
        check_env(lineup, log)
        check_sandbox(lineup, unsafe_code, log)
        return row["id"], lineup
    if not isinstance(lineup, Lineup):
        source = str(lineup) if lineup is not None else None
        lineup = _load(lineup, log)
    lineup = _resolved(lineup)
    if not checked:
        preflight(lineup, unsafe_code=unsafe_code, log=log)
    prior = None if new else store.unfinished_run(config_hash(lineup))
    if prior is not None:
        if log:
            log(
                f"resuming unfinished run {prior['id']} of this lineup (for a fresh run: --new, new=True)"
            )
        return prior["id"], lineup
    try:
        return create_run(store, lineup, source), lineup
    except (DatasetError, ValueError) as e:
        raise RunError(str(e)) from None


def _resolved(lineup: Lineup) -> Lineup:
    """A lineup made in code, completed by its providers as a loaded file is."""
    try:
        return resolve_lineup(lineup)
    except FieldProblems as e:
        raise RunError(
            "\n".join(f"{'.'.join(map(str, loc))}: {m}" for loc, m in e.problems)
        ) from None


def _load(path: str | Path | None, log: Log | None) -> Lineup:
    if path is None:
        from bakeoff.local import default_lineup_path

        path = default_lineup_path()
        if log:
            log(f"no lineup given: using the default local lineup ({path})")
    try:
        return load(Path(path))
    except LineupError as e:
        raise RunError(str(e)) from None


async def execute_run(
    store: Store,
    run_id: str,
    lineup: Lineup,
    *,
    use_cache: bool | None = None,
    on_progress: Callable[[str, EndpointProgress], None] | None = None,
) -> str:
    """Execute a stored run: its suites, then (endpoints still up) the capability probes and the
    fidelity audit as the lineup asks. Returns the run's status; a storage, server or audit
    failure is a `RunError` (the calls made so far are kept: fix it, then resume the run)."""
    from bakeoff.audit import AuditError, run_audit
    from bakeoff.local import AssetError, ServerError
    from bakeoff.perf import run_probes

    wants_audit = lineup.audit.enabled and lineup.reference and len(lineup.endpoints) > 1

    async def after(session: Any) -> None:
        if lineup.run.probe:
            await run_probes(session, max_context_cap=lineup.run.probe_max_context)
        if wants_audit:
            await run_audit(session, lineup.audit)

    cache = lineup.run.cache if use_cache is None else use_cache
    opts = RunOptions(use_cache=cache, on_progress=on_progress)
    try:
        outcome = await execute(store, run_id, opts, after=after)
    except (AssetError, ServerError, AuditError, StoreError, OSError) as e:
        raise RunError(f"run {run_id} stopped: {e}") from None
    return outcome.status


def default_report_path(store: Store, run_id: str) -> Path:
    """`bakeoff-reports/<run id>.html` next to the database (a server database's: in the working
    directory)."""
    return store.home / "bakeoff-reports" / f"{run_id}.html"


def _checked(
    lineup: Lineup | str | Path | None, resume: str | None, unsafe_code: bool, log: Log | None
) -> tuple[Lineup | None, str | None]:
    """A new run's lineup loaded and preflighted before any database is opened (a file that
    fails leaves none behind); a resumed run's lineup is read from the store."""
    if resume is not None:
        return None, None
    source = None
    if not isinstance(lineup, Lineup):
        source = str(lineup) if lineup is not None else None
        lineup = _load(lineup, log)
    lineup = _resolved(lineup)
    preflight(lineup, unsafe_code=unsafe_code, log=log)
    return lineup, source


def _open(db: str | Path | None) -> Store:
    from bakeoff.store import default_db_path

    return Store(db if db is not None else default_db_path())


def _report(db_path: str, run_id: str, report: str | Path | bool) -> Path | None:
    """Write the run's report over a connection of its own (`arun` writes it in a worker thread,
    and a SQLite connection belongs to the thread that opened it)."""
    if report is False:
        return None
    from bakeoff.ui import write_report

    store = Store(db_path)
    try:
        path = default_report_path(store, run_id) if report is True else Path(report)
        return write_report(store, run_id, path).path
    finally:
        store.close()


def _begin(
    db: str | Path | None,
    lineup: Lineup | None,
    source: str | None,
    *,
    resume: str | None,
    new: bool,
    unsafe_code: bool,
    log: Log | None,
) -> tuple[Store, str, Lineup]:
    """The database opened and the run to execute (resumed or created), once checks passed."""
    store = _open(db)
    try:
        run_id, lineup = prepare(
            store,
            lineup,
            resume=resume,
            new=new,
            unsafe_code=unsafe_code,
            source=source,
            checked=resume is None,
            log=log,
        )
    except BaseException:
        store.close()
        raise
    return store, run_id, lineup


async def arun(
    lineup: Lineup | str | Path | None = None,
    *,
    db: str | Path | None = None,
    resume: str | None = None,
    new: bool = False,
    use_cache: bool | None = None,
    report: str | Path | bool = True,
    unsafe_code: bool = False,
    check: bool = True,
    on_progress: Callable[[str, EndpointProgress], None] | None = None,
    log: Log | None = None,
) -> RunSummary:
    """`run` as a coroutine (cancelling it stores the run as interrupted, then re-raises)."""
    checked, source = _checked(lineup, resume, unsafe_code, log)
    bills = await check_endpoints(checked, log=log) if check and checked is not None else []
    store, run_id, ready = _begin(
        db, checked, source, resume=resume, new=new, unsafe_code=unsafe_code, log=log
    )
    record_preflight(store, run_id, ready, bills)
    try:
        status = await execute_run(
            store, run_id, ready, use_cache=use_cache, on_progress=on_progress
        )
        if status == "complete":
            await asyncio.to_thread(_report, store.target, run_id, report)
        return summary_of(store, run_id)
    finally:
        store.close()


def run(
    lineup: Lineup | str | Path | None = None,
    *,
    db: str | Path | None = None,
    resume: str | None = None,
    new: bool = False,
    use_cache: bool | None = None,
    report: str | Path | bool = True,
    unsafe_code: bool = False,
    check: bool = True,
    on_progress: Callable[[str, EndpointProgress], None] | None = None,
    log: Log | None = None,
) -> RunSummary:
    """Run a lineup (a `Lineup`, a YAML path, or None for the default local lineup) exactly as
    `bakeoff run` does and return its summary — the model whose JSON `bakeoff run --json` prints.

    Every call is stored in `db` (default `./bakeoff.db`); an unfinished run of the same lineup is
    resumed unless `new`; `resume` names a run. `report` is where the HTML report goes (True:
    `bakeoff-reports/<run>.html` beside the database; False: none). `check`: each endpoint of a
    new run with a `base_url` of the user's answers `/models` first (`check_endpoints`; a dead
    host, a missing `/v1`, a refused key raise `RunError`). A Ctrl-C stops the calls,
    stores the run as interrupted and returns its summary (`status == "interrupted"`); a problem
    before any call, or a fatal one during the run, raises `RunError` (and leaves no database
    behind that was not there)."""
    try:
        asyncio.get_running_loop()  # Jupyter runs one, where asyncio.run refuses, mid-way
    except RuntimeError:
        pass  # none running: the normal case
    else:
        raise RunError(
            "bakeoff.run() cannot start inside a running event loop (Jupyter, an async app): "
            "use `await bakeoff.arun(...)` there"
        )
    checked, source = _checked(lineup, resume, unsafe_code, log)
    bills = []
    if check and checked is not None:
        bills = asyncio.run(check_endpoints(checked, log=log))
    store, run_id, ready = _begin(
        db, checked, source, resume=resume, new=new, unsafe_code=unsafe_code, log=log
    )
    record_preflight(store, run_id, ready, bills)
    try:
        coro = execute_run(store, run_id, ready, use_cache=use_cache, on_progress=on_progress)
        try:
            status = asyncio.run(coro)
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "interrupted"
        if status == "complete":
            _report(store.target, run_id, report)
        return summary_of(store, run_id)
    finally:
        store.close()
